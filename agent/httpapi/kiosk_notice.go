package httpapi

import (
	"fmt"
	"strings"
	"time"

	"github.com/consentcam/consentcam/consent"
)

// kioskNotice is what the kiosk page shows beside the hashed notice of
// /v1/notice: the capture window's length and the Chinese (简体中文) of the
// notice's standard sentences. The configured strings (controller, contact,
// withdraw, purpose descriptions) are shown as configured.
type kioskNotice struct {
	Hash          string   `json:"hash"`
	WindowSeconds int64    `json:"window_seconds"`
	ZH            zhNotice `json:"zh"`
}

// zhNotice holds the Chinese of each standard sentence of the notice. A
// sentence is translated only while the notice says exactly the English it
// was translated from; otherwise it is left out and the page shows the
// English, so a changed notice never shows a stale translation.
type zhNotice struct {
	Collected string `json:"collected,omitempty"`
	Method    string `json:"method,omitempty"`
	Storage   string `json:"storage,omitempty"`
	Sensitive string `json:"sensitive,omitempty"`
	Refusal   string `json:"refusal,omitempty"`
	// Retention is each purpose's retention period in Chinese, by id.
	Retention map[string]string `json:"retention"`
}

// zhSentences maps the English of consent.NewNotice to its Chinese.
var zhSentences = map[string]string{
	"One picture of your face per visit, cropped to your face: never the whole camera image. " +
		"Nothing is collected unless you agree.": "每次来访只拍一张您的面部照片，只裁取您的脸部，绝不保存整个摄像画面。您不同意，就什么也不收集。",
	"Encrypted, on the camera box at this office, and copied nowhere else. " +
		"Staff may view it only for a purpose you agreed to and during that purpose's retention period; every view is recorded. " +
		"It is erased when the last retention period ends, or as soon as you withdraw.": "照片加密保存在本售楼处的摄像盒中，不会复制到任何其他地方。" +
		"工作人员只能为您同意的用途、在该用途的保存期限内查看照片，每次查看都有记录。" +
		"最后一个保存期限结束时，或您一撤回同意，照片即被删除。",
	"A picture of your face is sensitive personal information. " +
		"Your consent is asked for each purpose separately, and the picture is used for nothing else.": "您的面部照片属于敏感个人信息。每项用途都单独征求您的同意，照片不会用于任何其他目的。",
	"You may refuse, or agree to some purposes only. Refusing does not affect your visit in any way.": "您可以拒绝，也可以只同意其中部分用途。拒绝不会对您的来访产生任何影响。",
}

// The method sentence names the window's length between these two parts.
const (
	methodBefore = "The entrance camera takes the picture during the "
	methodAfter  = " after you agree, then stops. Any other face inside the picture is blurred. " +
		"Without your consent the camera looks for no face and keeps no picture."
	zhMethod = "入口摄像头只在您同意后的%s内拍照，然后停止。照片中如有其他人的脸，会被模糊处理。" +
		"没有您的同意，摄像头不会寻找人脸，也不会保存任何照片。"
)

// newKioskNotice renders the Chinese of notice n, whose hash is hash, for a
// capture window of window.
func newKioskNotice(n consent.Notice, hash string, window time.Duration) kioskNotice {
	zh := zhNotice{
		Collected: zhSentences[n.Collected],
		Storage:   zhSentences[n.Storage],
		Sensitive: zhSentences[n.Sensitive],
		Refusal:   zhSentences[n.Refusal],
		Retention: map[string]string{},
	}
	if strings.HasPrefix(n.Method, methodBefore) && strings.HasSuffix(n.Method, methodAfter) {
		zh.Method = fmt.Sprintf(zhMethod, zhDuration(window))
	}
	for _, p := range n.Purposes {
		zh.Retention[p.ID] = zhDuration(time.Duration(p.RetentionSeconds) * time.Second)
	}
	return kioskNotice{Hash: hash, WindowSeconds: int64((window + time.Second - 1) / time.Second), ZH: zh}
}

// zhDuration writes d in Chinese to the second, such as "30天", "1天12小时"
// or "20秒".
func zhDuration(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	var b strings.Builder
	for _, u := range []struct {
		name string
		secs int64
	}{{"天", 86400}, {"小时", 3600}, {"分钟", 60}, {"秒", 1}} {
		if n := secs / u.secs; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
		}
		secs %= u.secs
	}
	if b.Len() == 0 {
		return "0秒"
	}
	return b.String()
}
