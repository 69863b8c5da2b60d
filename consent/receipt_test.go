package consent_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/gowebpki/jcs"
)

var deviceKey = seededKey(4)

func receipt() consent.Receipt {
	return consent.Receipt{
		Request:    "req-1",
		Subject:    "v-7f3a9c",
		Erased:     3,
		Seq:        1042,
		Checkpoint: "consentcam/office-07/entrance-1\n1043\nq4Y1cQ4Bw2Sg0nxbLwGsOqE0p3VK2Tzj3G3ht1eqKJU=\n",
		Time:       time.Date(2026, 3, 2, 17, 30, 5, 123e6, time.FixedZone("CST", 8*3600)),
	}
}

func TestReceipt_RoundTrip(t *testing.T) {
	data, err := consent.SignReceipt(deviceKey, receipt())
	if err != nil {
		t.Fatal(err)
	}
	got, err := consent.VerifyReceipt(public(deviceKey), data)
	if err != nil {
		t.Fatal(err)
	}
	want := receipt()
	want.Time = want.Time.UTC()
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
}

// The format, checked as an MQTT subscriber in another language would:
// the members of SPEC, a time in UTC, and a signature over the canonical
// form of the rest.
func TestReceipt_Format(t *testing.T) {
	r := receipt()
	r.Subject, r.Visit = "", "visit-42"
	data, err := consent.SignReceipt(deviceKey, r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(slices.Sorted(maps.Keys(m)), ","), "checkpoint,erased,request,seq,signature,time,visit"; got != want {
		t.Errorf("members = %s, want %s", got, want)
	}
	if got, want := m["time"], "2026-03-02T09:30:05.123Z"; got != want {
		t.Errorf("time = %v, want %v", got, want)
	}
	sig, err := base64.StdEncoding.DecodeString(m["signature"].(string))
	if err != nil {
		t.Fatal(err)
	}
	delete(m, "signature")
	unsigned, _ := json.Marshal(m)
	canon, err := jcs.Transform(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(public(deviceKey), canon, sig) {
		t.Error("signature does not verify over the canonical form without signature")
	}
}

func TestVerifyReceipt_Tampered(t *testing.T) {
	data, err := consent.SignReceipt(deviceKey, receipt())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	for _, tt := range []struct {
		name string
		data []byte
		key  ed25519.PublicKey
	}{
		{"fewer records erased", edit(func(m map[string]any) { m["erased"] = 0 }), public(deviceKey)},
		{"another subject", edit(func(m map[string]any) { m["subject"] = "v-0000" }), public(deviceKey)},
		{"member added", edit(func(m map[string]any) { m["note"] = "all good" }), public(deviceKey)},
		{"member removed", edit(func(m map[string]any) { delete(m, "checkpoint") }), public(deviceKey)},
		{"signature of another receipt", edit(func(m map[string]any) {
			other := receipt()
			other.Erased = 0
			od, _ := consent.SignReceipt(deviceKey, other)
			var om map[string]any
			json.Unmarshal(od, &om)
			m["signature"] = om["signature"]
		}), public(deviceKey)},
		{"no signature", edit(func(m map[string]any) { delete(m, "signature") }), public(deviceKey)},
		{"signature not base64", edit(func(m map[string]any) { m["signature"] = "***" }), public(deviceKey)},
		{"subject given twice", []byte(strings.Replace(string(data), `"subject":"v-7f3a9c"`, `"subject":"v-0000","subject":"v-7f3a9c"`, 1)), public(deviceKey)},
		{"signed by another key", data, public(issuerKey)},
		{"not JSON", []byte("receipt"), public(deviceKey)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := consent.VerifyReceipt(tt.key, tt.data); err == nil {
				t.Errorf("accepted %+v", r)
			}
		})
	}
	// Re-encoding with other white space and member order is fine: the
	// signature covers the canonical form.
	t.Run("re-encoded", func(t *testing.T) {
		var m map[string]any
		json.Unmarshal(data, &m)
		out, _ := json.MarshalIndent(m, "", "  ")
		if _, err := consent.VerifyReceipt(public(deviceKey), out); err != nil {
			t.Error(err)
		}
	})
}

func TestSignReceipt_Invalid(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*consent.Receipt)
	}{
		{"no request", func(r *consent.Receipt) { r.Request = "" }},
		{"subject and visit", func(r *consent.Receipt) { r.Visit = "visit-42" }},
		{"neither subject nor visit", func(r *consent.Receipt) { r.Subject = "" }},
		{"negative count", func(r *consent.Receipt) { r.Erased = -1 }},
		{"no time", func(r *consent.Receipt) { r.Time = time.Time{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := receipt()
			tt.change(&r)
			if _, err := consent.SignReceipt(deviceKey, r); err == nil {
				t.Error("signed an invalid receipt")
			}
		})
	}
}
