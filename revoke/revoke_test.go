package revoke_test

// The command's own end-to-end test (cmd/consentcam, TestRevokeSite) runs
// real agents. Here scripted cameras on a real Mosquitto play what real
// agents cannot be made to do on cue: refuse a fresh command, publish a
// receipt for another subject, or be impersonated by a forged receipt.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/consentcam/consentcam/consent"
	"github.com/consentcam/consentcam/internal/testenv"
	"github.com/consentcam/consentcam/revoke"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const site = "office-07"

// behaviour is how a scripted camera answers a revoke command.
type behaviour int

const (
	answers      behaviour = iota // a receipt signed by its device key
	refuses                       // revoke.rejected, reason replayed
	forgedFirst                   // a receipt signed by another key, then its own
	otherSubject                  // a signed receipt that names another subject
	silent                        // nothing
)

// scriptedCamera announces itself (retained, as an agent does) and answers
// revoke commands, which it verifies, as told.
type scriptedCamera struct {
	name   string
	key    ed25519.PrivateKey
	c      mqtt.Client
	prefix string
}

func startCamera(t *testing.T, broker *testenv.Mosquitto, name string, operator ed25519.PublicKey, keysDir string, b behaviour) *scriptedCamera {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	pem, err := consent.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(keysDir, site), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keysDir, site, name+".pub"), pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cam := &scriptedCamera{name: name, key: key, prefix: "consentcam/v1/" + site + "/" + name}
	cam.c = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("camera-" + name))
	if tok := cam.c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { cam.c.Disconnect(100) })
	v := &consent.Verifier{Site: site, Camera: name, Operators: map[string]ed25519.PublicKey{"ops-1": operator}}
	publish := func(topic string, retained bool, payload []byte) {
		cam.c.Publish(cam.prefix+"/"+topic, 1, retained, payload).WaitTimeout(10 * time.Second)
	}
	if b != silent {
		publish("available", true, []byte("online"))
	} else {
		publish("notice", true, []byte(`{"hash":"x"}`))
	}
	cam.c.Subscribe(cam.prefix+"/revoke", 1, func(_ mqtt.Client, m mqtt.Message) {
		r, err := v.VerifyRevoke(m.Payload())
		if err != nil {
			t.Errorf("%s: the command does not verify: %v", name, err)
			return
		}
		receipt := func(key ed25519.PrivateKey, subject string) []byte {
			rc, err := consent.SignReceipt(key, consent.Receipt{Request: r.JTI, Subject: subject, Visit: r.Visit,
				Erased: 1, Seq: 42, Checkpoint: "cp", Time: time.Now()})
			if err != nil {
				t.Error(err)
			}
			return rc
		}
		switch b {
		case answers:
			publish("revoke/receipt", false, receipt(key, r.Subject))
		case refuses:
			ev, _ := json.Marshal(map[string]any{"seq": 7, "type": "revoke.rejected", "reason": "replayed", "detail": map[string]any{"request": r.JTI}})
			publish("audit", false, ev)
		case forgedFirst:
			_, forger, _ := ed25519.GenerateKey(rand.Reader)
			publish("revoke/receipt", false, receipt(forger, r.Subject))
			publish("revoke/receipt", false, receipt(key, r.Subject))
		case otherSubject:
			publish("revoke/receipt", false, receipt(key, "someone-else"))
		}
	}).WaitTimeout(10 * time.Second)
	return cam
}

func TestSend(t *testing.T) {
	broker := testenv.StartMosquitto(t)
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	keysDir := t.TempDir()
	for name, b := range map[string]behaviour{"a": answers, "b": refuses, "c": forgedFirst, "d": otherSubject, "e": silent} {
		startCamera(t, broker, name, opPub, keysDir, b)
	}
	// Not a camera name: ignored.
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("stray"))
	if tok := pub.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub.Publish("consentcam/v1/"+site+"/Not_A_Camera/available", 1, true, "online").WaitTimeout(10 * time.Second)
	pub.Disconnect(100)

	now := time.Now()
	req := revoke.Request{Site: site, Key: opKey, KeyID: "ops-1",
		Revoke: consent.Revoke{Issuer: "test", Reason: "withdrawn", Subject: "subj-1", IssuedAt: now, Expires: now.Add(5 * time.Minute)}}
	res, err := revoke.Send(context.Background(), revoke.Options{Broker: broker.URL(), Timeout: 3 * time.Second}, req, revoke.KeyDir(keysDir))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		camera, available string
		err               error
	}{
		{"a", "online", nil},
		{"b", "online", revoke.ErrRejected},
		{"c", "online", nil},
		{"d", "online", revoke.ErrUnverified},
		{"e", "", revoke.ErrNoReceipt},
	}
	if len(res.Answers) != len(want) {
		t.Fatalf("answers %+v, want cameras a to e", res.Answers)
	}
	for i, w := range want {
		a := res.Answers[i]
		t.Logf("%s: %+v %v", a.Camera, a.Receipt, a.Err)
		if a.Camera != w.camera || a.Available != w.available || !errors.Is(a.Err, w.err) || (a.Err == nil) != (a.Receipt != nil) {
			t.Errorf("answer %d: %+v, want camera %s, available %q, error %v", i, a, w.camera, w.available, w.err)
		}
		if a.Receipt != nil && (a.Receipt.Request != res.JTI || a.Receipt.Subject != "subj-1") {
			t.Errorf("%s: receipt %+v for request %s", a.Camera, a.Receipt, res.JTI)
		}
	}
	if res.OK() {
		t.Error("OK with cameras that did not answer")
	}

	t.Run("one camera", func(t *testing.T) {
		req := req
		req.Camera = "a"
		res, err := revoke.Send(context.Background(), revoke.Options{Broker: broker.URL(), Timeout: 3 * time.Second}, req, revoke.KeyDir(keysDir))
		if err != nil || len(res.Answers) != 1 || !res.OK() {
			t.Fatalf("%+v, %v; want camera a's receipt only", res, err)
		}
	})

	t.Run("a site without cameras", func(t *testing.T) {
		req := req
		req.Site = "office-99"
		_, err := revoke.Send(context.Background(), revoke.Options{Broker: broker.URL()}, req, revoke.KeyDir(keysDir))
		if !errors.Is(err, revoke.ErrNoCameras) {
			t.Errorf("err = %v, want ErrNoCameras", err)
		}
	})

	t.Run("no key for a camera", func(t *testing.T) {
		res, err := revoke.Send(context.Background(), revoke.Options{Broker: broker.URL(), Timeout: 3 * time.Second},
			revoke.Request{Site: site, Camera: "a", Key: opKey, KeyID: "ops-1", Revoke: req.Revoke}, revoke.KeyDir(t.TempDir()))
		if err != nil || len(res.Answers) != 1 || !errors.Is(res.Answers[0].Err, revoke.ErrUnverified) {
			t.Fatalf("%+v, %v; want an unverified receipt", res, err)
		}
		t.Log(res.Answers[0].Err)
	})

	t.Run("broker down", func(t *testing.T) {
		_, err := revoke.Send(context.Background(), revoke.Options{Broker: fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(t))}, req, revoke.KeyDir(keysDir))
		if err == nil {
			t.Error("no error without a broker")
		}
	})
}
