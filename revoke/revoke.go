// Package revoke carries one withdrawal of consent to every camera of a
// site: it signs a revoke command for the site, finds the cameras that
// announce themselves on the broker, publishes the command to each, and
// collects and verifies each camera's signed receipt.
//
// It is a fleet-side tool: it talks to the cameras only through the MQTT
// contract of docs/SPEC.md and reuses consent for commands and receipts. It
// never reaches into an agent, and it keeps nothing: each camera spends the
// command's id on its own, so running it again sends a new command.
package revoke

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/consentcam/consentcam/consent"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Errors of a camera's Answer, checked with errors.Is.
var (
	// ErrNoReceipt: no receipt for the command arrived in time.
	ErrNoReceipt = errors.New("no receipt")
	// ErrRejected: the camera refused the command (revoke.rejected).
	ErrRejected = errors.New("refused")
	// ErrUnverified: a receipt arrived but does not verify with the
	// camera's device key, or does not match the command.
	ErrUnverified = errors.New("receipt not verified")
	// ErrNoCameras: no camera of the site announced itself.
	ErrNoCameras = errors.New("no camera announced itself")
)

// Options say how to reach the cameras.
type Options struct {
	// Broker is the MQTT broker's URL (tcp://host:1883, ssl://host:8883).
	Broker   string
	ClientID string // default consentcam-revoke-RANDOM
	Username string
	Password string
	TLS      *tls.Config
	// TopicRoot is what the cameras' topic prefixes start with: a camera's
	// topics are TopicRoot/SITE/CAMERA/… (default consentcam/v1).
	TopicRoot string
	// Timeout is how long to wait for the receipts once the command is out
	// (default 10 s).
	Timeout time.Duration
	// Settle is how long the broker must stay quiet after the subscription
	// before the retained announcements are taken as complete (default
	// 500 ms).
	Settle time.Duration
}

// Request is one revoke, for every camera of Site or only Camera.
type Request struct {
	Site   string
	Camera string // "" for every camera of the site
	// Revoke is the command to sign: Subject or Visit, Reason, Issuer,
	// times. Its Audience is set here (the site, or the camera); an empty
	// JTI is filled with a random one.
	Revoke consent.Revoke
	// Key and KeyID are the operator's signing key and the key id the
	// cameras know it by.
	Key   ed25519.PrivateKey
	KeyID string
}

// Keys gives a camera's device public key, which signs its receipts.
type Keys interface {
	DeviceKey(site, camera string) (ed25519.PublicKey, error)
}

// KeyDir is a directory of device public keys: DIR/SITE/CAMERA.pub, each
// the device.pub (PKIX PEM) of that camera.
type KeyDir string

// DeviceKey reads DIR/SITE/CAMERA.pub.
func (d KeyDir) DeviceKey(site, camera string) (ed25519.PublicKey, error) {
	pub, err := consent.ReadPublicKey(filepath.Join(string(d), site, camera+".pub"))
	if err != nil {
		return nil, fmt.Errorf("device key of %s/%s: %w", site, camera, err)
	}
	return pub, nil
}

// Answer is what one camera did with the command.
type Answer struct {
	Camera string
	// Available is the camera's last word on …/available ("online",
	// "stopped", "offline"), "" if it never said.
	Available string
	// Receipt is the camera's receipt, when one arrived and verified.
	Receipt *consent.Receipt
	// Err says why there is no verified receipt (ErrNoReceipt, ErrRejected
	// or ErrUnverified, wrapped with the details).
	Err error
}

// Result is the outcome of Send.
type Result struct {
	JTI     string // the command's id
	Answers []Answer
}

// OK reports whether every camera answered with a verified receipt.
func (r *Result) OK() bool {
	return !slices.ContainsFunc(r.Answers, func(a Answer) bool { return a.Err != nil })
}

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Send signs the revoke command, publishes it to each camera of the site
// that announces itself (retained …/available or …/notice), and waits for
// their receipts, verified with keys. The error is for what stops the
// whole operation (the broker, no camera); each camera's outcome is in its
// Answer.
func Send(ctx context.Context, o Options, r Request, keys Keys) (*Result, error) {
	if !nameRE.MatchString(r.Site) || (r.Camera != "" && !nameRE.MatchString(r.Camera)) {
		return nil, fmt.Errorf("revoke: site %q / camera %q: must be 1 to 64 of a-z, 0-9 and '-'", r.Site, r.Camera)
	}
	if (r.Revoke.Subject == "") == (r.Revoke.Visit == "") {
		return nil, errors.New("revoke: exactly one of subject and visit")
	}
	if o.ClientID == "" {
		o.ClientID = "consentcam-revoke-" + strings.ToLower(rand.Text()[:10])
	}
	if o.TopicRoot == "" {
		o.TopicRoot = "consentcam/v1"
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 500 * time.Millisecond
	}
	cmd := r.Revoke
	if cmd.JTI == "" {
		cmd.JTI = rand.Text()
	}
	cmd.Audience = consent.Audience(r.Site, r.Camera)
	token, err := consent.SignRevoke(r.Key, r.KeyID, cmd)
	if err != nil {
		return nil, fmt.Errorf("revoke: %w", err)
	}

	s := &session{o: o, req: r, cmd: cmd, keys: keys, cameras: map[string]*camera{}, changed: make(chan struct{}, 1)}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	defer s.c.Disconnect(250)
	targets, err := s.discover(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range targets {
		t := s.c.Publish(s.topic(name, "revoke"), 1, false, token)
		if err := wait(ctx, t); err != nil {
			return nil, fmt.Errorf("revoke: publish to %s: %w", name, err)
		}
	}
	s.collect(ctx, targets)

	res := &Result{JTI: cmd.JTI}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range targets {
		cam := s.camera(name)
		a := Answer{Camera: name, Available: cam.available, Receipt: cam.receipt, Err: cam.err}
		if a.Receipt == nil && a.Err == nil {
			a.Err = fmt.Errorf("%w within %v", ErrNoReceipt, o.Timeout)
		}
		res.Answers = append(res.Answers, a)
	}
	return res, nil
}

// session is one run of Send: the MQTT client and what it has heard.
type session struct {
	o    Options
	req  Request
	cmd  consent.Revoke
	keys Keys
	c    mqtt.Client

	mu      sync.Mutex
	cameras map[string]*camera
	last    time.Time     // when the last announcement arrived
	changed chan struct{} // signalled when an answer arrives
}

// camera is what the session heard of one camera.
type camera struct {
	announced bool
	available string
	receipt   *consent.Receipt // verified
	err       error            // a refusal, or a receipt that does not verify
}

func (s *session) camera(name string) *camera {
	c, ok := s.cameras[name]
	if !ok {
		c = &camera{}
		s.cameras[name] = c
	}
	return c
}

func (s *session) topic(camera, name string) string {
	return s.o.TopicRoot + "/" + s.req.Site + "/" + camera + "/" + name
}

func (s *session) connect(ctx context.Context) error {
	opts := mqtt.NewClientOptions().
		AddBroker(s.o.Broker).
		SetClientID(s.o.ClientID).
		SetUsername(s.o.Username).
		SetPassword(s.o.Password).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectTimeout(10 * time.Second).
		SetOrderMatters(false)
	if s.o.TLS != nil {
		opts.SetTLSConfig(s.o.TLS)
	}
	s.c = mqtt.NewClient(opts)
	if err := wait(ctx, s.c.Connect()); err != nil {
		return fmt.Errorf("revoke: connect to %s: %w", s.o.Broker, err)
	}
	return nil
}

// discover subscribes to the site's announcements, receipts and audit
// events, waits until the retained announcements have arrived, and returns
// the cameras to send the command to, sorted.
func (s *session) discover(ctx context.Context) ([]string, error) {
	cam := "+"
	if s.req.Camera != "" {
		cam = s.req.Camera
	}
	filters := map[string]byte{}
	for _, name := range []string{"available", "notice", "revoke/receipt", "audit"} {
		filters[s.topic(cam, name)] = 1
	}
	s.mu.Lock()
	s.last = time.Now()
	s.mu.Unlock()
	if err := wait(ctx, s.c.SubscribeMultiple(filters, s.handle)); err != nil {
		return nil, fmt.Errorf("revoke: subscribe: %w", err)
	}
	// Retained messages follow the subscription at once; wait until the
	// broker has been quiet for Settle.
	for {
		s.mu.Lock()
		quiet := time.Until(s.last.Add(s.o.Settle))
		s.mu.Unlock()
		if quiet <= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(quiet):
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, c := range s.cameras {
		if c.announced {
			names = append(names, name)
		}
	}
	if s.req.Camera != "" && !slices.Contains(names, s.req.Camera) {
		// It never announced itself; the command goes to it all the same.
		names = append(names, s.req.Camera)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("revoke: %w on %s under %s/%s/+/available", ErrNoCameras, s.o.Broker, s.o.TopicRoot, s.req.Site)
	}
	slices.Sort(names)
	return names, nil
}

// collect waits until every target answered with a verified receipt or a
// refusal, or the timeout passed. A receipt that does not verify does not
// end the wait: anyone allowed to publish on the topic could send one.
func (s *session) collect(ctx context.Context, targets []string) {
	timeout := time.NewTimer(s.o.Timeout)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		done := !slices.ContainsFunc(targets, func(name string) bool {
			c := s.camera(name)
			return c.receipt == nil && !errors.Is(c.err, ErrRejected)
		})
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		case <-s.changed:
		}
	}
}

// handle records an announcement, a receipt or a refusal.
func (s *session) handle(_ mqtt.Client, m mqtt.Message) {
	rest, ok := strings.CutPrefix(m.Topic(), s.o.TopicRoot+"/"+s.req.Site+"/")
	if !ok {
		return
	}
	name, kind, ok := strings.Cut(rest, "/")
	if !ok || !nameRE.MatchString(name) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.camera(name)
	switch kind {
	case "available":
		c.announced, c.available = true, string(m.Payload())
		s.last = time.Now()
	case "notice":
		c.announced = true
		s.last = time.Now()
	case "revoke/receipt":
		s.receipt(name, c, m.Payload())
	case "audit":
		s.refusal(c, m.Payload())
	}
}

// receipt checks a receipt that names the command: signed by the camera's
// device key, for what the command erases. A verified receipt replaces an
// earlier one that did not verify (someone else may publish on the topic).
func (s *session) receipt(name string, c *camera, payload []byte) {
	var head struct {
		Request string `json:"request"`
	}
	if json.Unmarshal(payload, &head) != nil || head.Request != s.cmd.JTI || c.receipt != nil {
		return
	}
	defer s.signal()
	pub, err := s.keys.DeviceKey(s.req.Site, name)
	if err != nil {
		c.err = fmt.Errorf("%w: %v", ErrUnverified, err)
		return
	}
	rc, err := consent.VerifyReceipt(pub, payload)
	switch {
	case err != nil:
		c.err = fmt.Errorf("%w: %s", ErrUnverified, strings.TrimPrefix(err.Error(), "receipt: "))
	case rc.Subject != s.cmd.Subject || rc.Visit != s.cmd.Visit:
		c.err = fmt.Errorf("%w: it is for subject %q visit %q", ErrUnverified, rc.Subject, rc.Visit)
	default:
		c.receipt, c.err = rc, nil
	}
}

// refusal notes a revoke.rejected event about the command.
func (s *session) refusal(c *camera, payload []byte) {
	var ev struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
		Detail struct {
			Request string `json:"request"`
		} `json:"detail"`
	}
	if json.Unmarshal(payload, &ev) != nil || ev.Type != "revoke.rejected" || ev.Detail.Request != s.cmd.JTI || c.receipt != nil {
		return
	}
	c.err = fmt.Errorf("%w: %s", ErrRejected, ev.Reason)
	s.signal()
}

func (s *session) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// wait waits for an MQTT token, or the context.
func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ Keys = KeyDir("")
