package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gowebpki/jcs"
)

// NoticeVersion is the version of the notice's JSON format: 2 writes every
// text in every language of the notice.
const NoticeVersion = 2

// Notice is what every visitor is told before any consent is asked: who
// collects what, how, for which purposes and for how long, where it is kept,
// how to withdraw, that refusing is free and what happens instead, and what
// a minor needs. A kiosk renders it; the hash of the notice it showed goes
// into the consent token. Every text is given in every language the notice
// is written in, and the hash covers them all; Language is the binding one.
// It holds no timestamp, so the same configuration always gives the same
// hash.
type Notice struct {
	Version int `json:"version"`
	// Language is the binding language: the text that is the notice
	// where two languages differ. Languages are all the notice is written
	// in, Language first.
	Language   string    `json:"language"`
	Languages  []string  `json:"languages"`
	Site       string    `json:"site"`
	Camera     string    `json:"camera"`
	Controller Text      `json:"controller"` // who decides and answers for the processing
	Contact    Text      `json:"contact"`    // where to ask, complain or withdraw
	Purposes   []Purpose `json:"purposes"`   // each consented to separately
	Collected  Text      `json:"collected"`  // what is collected
	Method     Text      `json:"method"`     // how and when
	Storage    Text      `json:"storage"`    // where it is kept and when it is erased
	Withdraw   Text      `json:"withdraw"`   // how to withdraw consent
	Sensitive  Text      `json:"sensitive"`  // that a face is sensitive personal information
	Refusal    Text      `json:"refusal"`    // that refusing does not affect the visit
	// Alternative is how the visit goes on without a picture (the 2025
	// face-recognition measures, art. 10).
	Alternative Text `json:"alternative"`
	// Minors says that a visitor under 14 needs a guardian's consent
	// (measures art. 7; PIPL art. 31).
	Minors Text `json:"minors"`
	// Compliance names the records behind the processing, when configured.
	Compliance *Compliance `json:"compliance,omitempty"`
}

// Compliance is what the processor states of its own records: the personal
// information protection impact assessment done before the processing
// (PIPL art. 55-56; measures art. 9) and whom to reach about personal
// information.
type Compliance struct {
	PIAReference string `json:"pia_reference"`
	PIADate      string `json:"pia_date"` // YYYY-MM-DD
	DPOContact   Text   `json:"dpo_contact"`
}

// Purpose is one purpose a visitor may agree to, with its retention period
// in words and in seconds.
type Purpose struct {
	ID               string `json:"id"`
	Description      Text   `json:"description"`
	Retention        Text   `json:"retention"`         // such as "30 days", "30天"
	RetentionSeconds int64  `json:"retention_seconds"` // exact, rounded up to a whole second
}

// NewNotice returns the notice of a camera whose capture window lasts window,
// bound in language (one of Languages; LangChinese when empty), with the
// product's fixed statements filled in in every language. The caller sets
// Controller, Contact, Withdraw, Alternative, Purposes and Compliance from
// the configuration.
func NewNotice(site, camera string, window time.Duration, language string) Notice {
	if language == "" {
		language = LangChinese
	}
	langs := []string{language}
	for _, l := range Languages {
		if l != language {
			langs = append(langs, l)
		}
	}
	return Notice{
		Version:   NoticeVersion,
		Language:  language,
		Languages: langs,
		Site:      site,
		Camera:    camera,
		Collected: Text{
			LangEnglish: "One picture of your face per visit, cropped to your face: never the whole camera image. " +
				"Nothing is collected unless you agree.",
			LangChinese: "每次来访只拍一张您的面部照片，只裁取您的脸部，绝不保存整个摄像画面。您不同意，就什么也不收集。",
		},
		Method: Text{
			LangEnglish: fmt.Sprintf("The entrance camera takes the picture during the %s after you agree, then stops. "+
				"Any other face inside the picture is blurred. Without your consent the camera looks for no face and keeps no picture.",
				humanDuration(window)),
			LangChinese: fmt.Sprintf("入口摄像头只在您同意后的%s内拍照，然后停止。照片中如有其他人的脸，会被模糊处理。"+
				"没有您的同意，摄像头不会寻找人脸，也不会保存任何照片。", zhDuration(window)),
		},
		Storage: Text{
			LangEnglish: "Encrypted, on the camera box at this office, and copied nowhere else. " +
				"Staff may view it only for a purpose you agreed to and during that purpose's retention period; every view is recorded. " +
				"It is erased when the last retention period ends, or as soon as you withdraw.",
			LangChinese: "照片加密保存在本售楼处的摄像盒中，不会复制到任何其他地方。" +
				"工作人员只能为您同意的用途、在该用途的保存期限内查看照片，每次查看都有记录。" +
				"最后一个保存期限结束时，或您一撤回同意，照片即被删除。",
		},
		Sensitive: Text{
			LangEnglish: "A picture of your face is sensitive personal information. " +
				"Your consent is asked for each purpose separately, and the picture is used for nothing else.",
			LangChinese: "您的面部照片属于敏感个人信息。每项用途都单独征求您的同意，照片不会用于任何其他目的。",
		},
		Refusal: Text{
			LangEnglish: "You may refuse, or agree to some purposes only. Refusing does not affect your visit in any way.",
			LangChinese: "您可以拒绝，也可以只同意其中部分用途。拒绝不会对您的来访产生任何影响。",
		},
		Minors: Text{
			LangEnglish: "A visitor under 14 needs the consent of a parent or guardian, given in person here. " +
				"Without it no picture is taken.",
			LangChinese: "未满十四周岁的访客，须由其父母或其他监护人在现场当面同意。没有监护人的同意，不会拍照。",
		},
	}
}

// NewPurpose returns a purpose of the notice, its retention written in words
// in every language.
func NewPurpose(id string, description Text, retention time.Duration) Purpose {
	secs := int64((retention + time.Second - 1) / time.Second)
	return Purpose{
		ID:               id,
		Description:      description,
		Retention:        durationText(time.Duration(secs) * time.Second),
		RetentionSeconds: secs,
	}
}

// Hash returns the notice hash: the lowercase hex SHA-256 of the RFC 8785
// (JCS) canonical form of the notice without its hash field.
func (n Notice) Hash() string {
	sum := sha256.Sum256(n.canonical())
	return hex.EncodeToString(sum[:])
}

// JSON returns the notice with its hash field, in canonical form: what is
// published to kiosks.
func (n Notice) JSON() []byte {
	data, err := json.Marshal(struct {
		Notice
		Hash string `json:"hash"`
	}{n, n.Hash()})
	if err != nil {
		panic("consent: marshal notice: " + err.Error())
	}
	return mustCanonical(data)
}

func (n Notice) canonical() []byte {
	data, err := json.Marshal(n)
	if err != nil {
		panic("consent: marshal notice: " + err.Error())
	}
	return mustCanonical(data)
}

// mustCanonical canonicalises JSON that encoding/json produced from our own
// types, which RFC 8785 always accepts: it holds only strings and integers
// far below 2^53.
func mustCanonical(data []byte) []byte {
	out, err := jcs.Transform(data)
	if err != nil {
		panic("consent: canonical JSON: " + err.Error())
	}
	return out
}
