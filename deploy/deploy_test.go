// Package deploy holds no code: its test checks that the broker
// configuration and ACL shipped in this folder load in Debian's Mosquitto
// and let each role do what docs/INSTALL.md says, and nothing more.
package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/consentcam/consentcam/internal/testenv"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const prefix = "consentcam/v1/office-07/entrance-1"

// agentUser is the box's broker user: its client id too.
const agentUser = "consentcam-office-07-entrance-1"

var roles = []string{agentUser, "kiosk", "operator", "auditor"}

// startBroker runs Mosquitto with deploy/mosquitto.conf and
// deploy/consentcam.acl as shipped, but for the listener's port and the
// paths of its files, with one password per role.
func startBroker(t *testing.T) *testenv.Mosquitto {
	t.Helper()
	conf, err := os.ReadFile("mosquitto.conf")
	if err != nil {
		t.Fatal(err)
	}
	passwd := testenv.Program(t, "mosquitto_passwd")
	return testenv.StartMosquittoConfig(t, func(port int, dir string) string {
		if err := copyFile("consentcam.acl", filepath.Join(dir, "consentcam.acl")); err != nil {
			t.Fatal(err)
		}
		pw := filepath.Join(dir, "passwd")
		for i, role := range roles {
			args := []string{"-b", pw, role, "pw-" + role}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		text := string(conf)
		for _, r := range []struct{ re, with string }{
			{`(?m)^listener 1883 127\.0\.0\.1$`, fmt.Sprintf("listener %d 127.0.0.1", port)},
			{`(?m)^password_file .*$`, "password_file " + pw},
			{`(?m)^acl_file .*$`, "acl_file " + filepath.Join(dir, "consentcam.acl")},
		} {
			re := regexp.MustCompile(r.re)
			if !re.MatchString(text) {
				t.Fatalf("deploy/mosquitto.conf has no line matching %s", r.re)
			}
			text = re.ReplaceAllString(text, r.with)
		}
		return text + "persistence_location " + dir + "/\n"
	})
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o600)
}

// client connects as a role; the subscriptions record what arrives.
type client struct {
	c   mqtt.Client
	mu  sync.Mutex
	got map[string][]string
}

func connect(t *testing.T, b *testenv.Mosquitto, user, password string) (*client, error) {
	t.Helper()
	return connectAs(t, b, "test-"+user, user, password, nil)
}

// connectAs connects with a client id of its choosing; lost, when not nil,
// is closed if the broker drops the connection.
func connectAs(t *testing.T, b *testenv.Mosquitto, id, user, password string, lost chan struct{}) (*client, error) {
	t.Helper()
	c := &client{got: map[string][]string{}}
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID(id).SetCleanSession(false).
		SetUsername(user).SetPassword(password).SetConnectRetry(false).SetAutoReconnect(false)
	if lost != nil {
		opts.SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
	}
	c.c = mqtt.NewClient(opts)
	tok := c.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.c.Disconnect(50) })
	return c, nil
}

func (c *client) subscribe(t *testing.T, topic string) {
	t.Helper()
	tok := c.c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got[m.Topic()] = append(c.got[m.Topic()], string(m.Payload()))
	})
	if tok.WaitTimeout(10 * time.Second); tok.Error() != nil {
		t.Fatal(tok.Error())
	}
}

func (c *client) publish(t *testing.T, topic, payload string) {
	t.Helper()
	// Mosquitto acknowledges a publish the ACL denies and drops it.
	if tok := c.c.Publish(topic, 1, false, payload); tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
		t.Fatal(tok.Error())
	}
}

func (c *client) received(topic string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got[topic]...)
}

func TestBrokerConfig(t *testing.T) {
	b := startBroker(t)
	cl := map[string]*client{}
	for _, role := range roles {
		c, err := connect(t, b, role, "pw-"+role)
		if err != nil {
			t.Fatalf("%s cannot connect: %v", role, err)
		}
		cl[role] = c
	}
	if _, err := connect(t, b, "", ""); err == nil {
		t.Error("an anonymous client connected")
	}
	if _, err := connect(t, b, "kiosk", "wrong"); err == nil {
		t.Error("a wrong password connected")
	}

	// Everyone listens where the ACL lets them.
	cl[agentUser].subscribe(t, prefix+"/consent")
	cl[agentUser].subscribe(t, prefix+"/revoke")
	cl["auditor"].subscribe(t, prefix+"/#")
	cl["operator"].subscribe(t, prefix+"/revoke/receipt")

	publishes := []struct {
		from, topic string
		to          string // the subscriber that must (or must not) get it
		allowed     bool
	}{
		{"kiosk", "/consent", agentUser, true},
		{"operator", "/revoke", agentUser, true},
		{agentUser, "/audit", "auditor", true},
		{agentUser, "/checkpoint", "auditor", true},
		{agentUser, "/revoke/receipt", "operator", true},
		{"kiosk", "/revoke", agentUser, false},     // a kiosk cannot erase
		{"auditor", "/revoke", agentUser, false},   // nor can an auditor
		{"operator", "/consent", agentUser, false}, // an operator issues no consent
		{"kiosk", "/audit", "auditor", false},      // nobody forges the log
		{"operator", "/audit", "auditor", false},
	}
	payload := func(from, topic string) string { return fmt.Sprintf("%s wrote %s", from, topic) }
	for _, p := range publishes {
		cl[p.from].publish(t, prefix+p.topic, payload(p.from, p.topic))
	}
	for _, p := range publishes {
		if !p.allowed {
			continue
		}
		arrived := testenv.WaitUntil(10*time.Second, func() bool {
			return slices.Contains(cl[p.to].received(prefix+p.topic), payload(p.from, p.topic))
		})
		if !arrived {
			t.Fatalf("%s: %q never reached %s", p.topic, payload(p.from, p.topic), p.to)
		}
	}
	// Every denied message was published before the allowed ones above
	// arrived, and had a further 200 ms.
	time.Sleep(200 * time.Millisecond)
	for _, p := range publishes {
		if !p.allowed && slices.Contains(cl[p.to].received(prefix+p.topic), payload(p.from, p.topic)) {
			t.Errorf("the ACL let %q through to %s", payload(p.from, p.topic), p.to)
		}
	}
}

// No broker account can take the box's session over: a client of another
// user connecting with the box's client id gets its own user name as its
// id (use_username_as_clientid), so the box stays connected and keeps
// receiving its commands.
func TestNoSessionTakeover(t *testing.T) {
	b := startBroker(t)
	lost := make(chan struct{})
	box, err := connectAs(t, b, agentUser, agentUser, "pw-"+agentUser, lost)
	if err != nil {
		t.Fatal(err)
	}
	box.subscribe(t, prefix+"/revoke")
	for _, role := range []string{"auditor", "kiosk", "operator"} {
		if _, err := connectAs(t, b, agentUser, role, "pw-"+role, nil); err != nil {
			t.Fatalf("%s: %v", role, err)
		}
	}
	operator, err := connect(t, b, "operator", "pw-operator")
	if err != nil {
		t.Fatal(err)
	}
	operator.publish(t, prefix+"/revoke", "a revoke")
	if !testenv.WaitUntil(10*time.Second, func() bool { return slices.Contains(box.received(prefix+"/revoke"), "a revoke") }) {
		t.Error("the box no longer gets its revokes")
	}
	select {
	case <-lost:
		t.Error("another account's client took the box's session over")
	default:
	}
}

// A message larger than anything consentcam sends is refused by the broker
// (its sender is dropped) before any subscriber buffers it.
func TestMessageSizeLimit(t *testing.T) {
	b := startBroker(t)
	box, err := connect(t, b, agentUser, "pw-"+agentUser)
	if err != nil {
		t.Fatal(err)
	}
	box.subscribe(t, prefix+"/consent")
	lost := make(chan struct{})
	kiosk, err := connectAs(t, b, "kiosk", "kiosk", "pw-kiosk", lost)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	kiosk.c.Publish(prefix+"/consent", 1, false, big)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Error("the broker kept the connection of a client sending 1 MiB")
	}
	time.Sleep(200 * time.Millisecond)
	if len(box.received(prefix+"/consent")) != 0 {
		t.Error("a 1 MiB message reached the box")
	}
	small, err := connect(t, b, "kiosk", "pw-kiosk")
	if err != nil {
		t.Fatal(err)
	}
	small.publish(t, prefix+"/consent", strings.Repeat("t", 8<<10))
	if !testenv.WaitUntil(10*time.Second, func() bool { return len(box.received(prefix+"/consent")) == 1 }) {
		t.Error("an 8 KiB token did not get through")
	}
}
