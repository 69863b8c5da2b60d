package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gowebpki/jcs"
)

// NoticeVersion is the version of the notice's JSON format.
const NoticeVersion = 1

// Notice is what every visitor is told before any consent is asked: who
// collects what, how, for which purposes and for how long, where it is kept,
// how to withdraw, and that refusing is free. A kiosk renders it; the hash of
// the notice it showed goes into the consent token. It holds no timestamp, so
// the same configuration always gives the same hash.
type Notice struct {
	Version    int       `json:"version"`
	Site       string    `json:"site"`
	Camera     string    `json:"camera"`
	Controller string    `json:"controller"` // who decides and answers for the processing
	Contact    string    `json:"contact"`    // where to ask, complain or withdraw
	Purposes   []Purpose `json:"purposes"`   // each consented to separately
	Collected  string    `json:"collected"`  // what is collected
	Method     string    `json:"method"`     // how and when
	Storage    string    `json:"storage"`    // where it is kept and when it is erased
	Withdraw   string    `json:"withdraw"`   // how to withdraw consent
	Sensitive  string    `json:"sensitive"`  // that a face is sensitive personal information
	Refusal    string    `json:"refusal"`    // that refusing does not affect the visit
}

// Purpose is one purpose a visitor may agree to, with its retention period
// in words and in seconds.
type Purpose struct {
	ID               string `json:"id"`
	Description      string `json:"description"`
	Retention        string `json:"retention"`         // such as "30 days"
	RetentionSeconds int64  `json:"retention_seconds"` // exact, rounded up to a whole second
}

// NewNotice returns the notice of a camera whose capture window lasts window,
// with the product's fixed statements filled in. The caller sets Controller,
// Contact, Withdraw and Purposes from the configuration.
func NewNotice(site, camera string, window time.Duration) Notice {
	return Notice{
		Version: NoticeVersion,
		Site:    site,
		Camera:  camera,
		Collected: "One picture of your face per visit, cropped to your face: never the whole camera image. " +
			"Nothing is collected unless you agree.",
		Method: fmt.Sprintf("The entrance camera takes the picture during the %s after you agree, then stops. "+
			"Any other face inside the picture is blurred. Without your consent the camera looks for no face and keeps no picture.",
			humanDuration(window)),
		Storage: "Encrypted, on the camera box at this office, and copied nowhere else. " +
			"Staff may view it only for a purpose you agreed to and during that purpose's retention period; every view is recorded. " +
			"It is erased when the last retention period ends, or as soon as you withdraw.",
		Sensitive: "A picture of your face is sensitive personal information. " +
			"Your consent is asked for each purpose separately, and the picture is used for nothing else.",
		Refusal: "You may refuse, or agree to some purposes only. Refusing does not affect your visit in any way.",
	}
}

// NewPurpose returns a purpose of the notice, its retention written in words.
func NewPurpose(id, description string, retention time.Duration) Purpose {
	secs := int64((retention + time.Second - 1) / time.Second)
	return Purpose{
		ID:               id,
		Description:      description,
		Retention:        humanDuration(time.Duration(secs) * time.Second),
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

// humanDuration writes d in words for a visitor, such as "30 days",
// "1 day and 12 hours" or "20 seconds", to the second.
func humanDuration(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	var parts []string
	for _, u := range []struct {
		name string
		secs int64
	}{{"day", 86400}, {"hour", 3600}, {"minute", 60}, {"second", 1}} {
		n := secs / u.secs
		secs %= u.secs
		switch {
		case n == 1:
			parts = append(parts, "1 "+u.name)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", n, u.name))
		}
	}
	switch len(parts) {
	case 0:
		return "0 seconds"
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
