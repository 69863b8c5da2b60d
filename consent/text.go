package consent

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Languages of the notice. Every text of the notice is written in each: the
// product's own sentences in these two, and the office's (controller,
// contact, purposes, …) in whichever of them the configuration gives.
const (
	LangChinese = "zh-CN" // 简体中文, the default binding language
	LangEnglish = "en"
)

// Languages lists the languages the notice can be written in, the default
// binding language first.
var Languages = []string{LangChinese, LangEnglish}

// CanonicalLanguage returns the tag of Languages that tag names (tags are
// compared case-insensitively, as BCP 47 does), or false.
func CanonicalLanguage(tag string) (string, bool) {
	for _, l := range Languages {
		if strings.EqualFold(l, tag) {
			return l, true
		}
	}
	return "", false
}

// Text is one text a visitor reads, by language tag (Languages). In the
// notice's JSON it is an object such as {"en": "…", "zh-CN": "…"}.
type Text map[string]string

// Same is the same text in every language, for what is written the same in
// any (a name, an address, a telephone number).
func Same(s string) Text {
	t := Text{}
	for _, l := range Languages {
		t[l] = s
	}
	return t
}

// In returns the text in lang, or in the notice's binding language binding
// when it has none in lang.
func (t Text) In(lang, binding string) string {
	if s, ok := t[lang]; ok {
		return s
	}
	return t[binding]
}

// Equal reports whether two texts say the same in every language.
func (t Text) Equal(u Text) bool {
	if len(t) != len(u) {
		return false
	}
	for l, s := range t {
		if v, ok := u[l]; !ok || v != s {
			return false
		}
	}
	return true
}

// Check reports what keeps t from being a text of a notice bound in
// binding: no text in the binding language, a blank one, or a language the
// notice cannot be written in.
func (t Text) Check(binding string) error {
	for _, l := range sortedKeys(t) {
		if !slices.Contains(Languages, l) {
			return fmt.Errorf("language %q is not one the notice is written in (%s)", l, strings.Join(Languages, ", "))
		}
		if strings.TrimSpace(t[l]) == "" {
			return fmt.Errorf("the %s text is empty", l)
		}
	}
	if _, ok := t[binding]; !ok {
		return fmt.Errorf("no text in %s, the binding language (notice.language)", binding)
	}
	return nil
}

func sortedKeys(t Text) []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// durationText writes d in words in every language, to the second: "30
// days" and "30天", "1 day and 12 hours" and "1天12小时".
func durationText(d time.Duration) Text {
	return Text{LangEnglish: humanDuration(d), LangChinese: zhDuration(d)}
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

// UnmarshalJSON reads a text by language, or a plain string: what version 1
// of the notice wrote, in English.
func (t *Text) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*t = Text{LangEnglish: s}
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("a text must be a string or an object of strings by language: %v", err)
	}
	*t = m
	return nil
}
