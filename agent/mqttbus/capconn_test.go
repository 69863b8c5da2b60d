package mqttbus

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/consentcam/consentcam/consent"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// publishPacket is a PUBLISH as a broker sends it.
func publishPacket(t *testing.T, topic string, qos byte, id uint16, payload []byte) []byte {
	t.Helper()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = topic, qos, id, payload
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The connection hands every packet on as it came, but a PUBLISH over the
// limit, which paho gets with its topic and packet id and a stand-in payload
// the verifier refuses as too-large, without the real payload ever being
// held.
func TestCapConn(t *testing.T) {
	small := publishPacket(t, "a/consent", 1, 7, []byte("a token"))
	big := publishPacket(t, "a/consent", 1, 8, bytes.Repeat([]byte{'b'}, 3<<20))
	big0 := publishPacket(t, "a/revoke", 0, 0, bytes.Repeat([]byte{'c'}, MaxMessage+1))
	ping := []byte{0xd0, 0x00}
	stream := bytes.Join([][]byte{ping, small, big, big0, small, ping}, nil)

	server, client := net.Pipe()
	go func() {
		for rest := stream; len(rest) > 0; { // in odd pieces, as TCP may
			n := min(len(rest), 1000+len(rest)%777)
			server.Write(rest[:n])
			rest = rest[n:]
		}
		server.Close()
	}()
	c := &capConn{Conn: client, limit: MaxMessage}
	var got []packets.ControlPacket
	for {
		p, err := packets.ReadPacket(c)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	if len(got) != 6 {
		t.Fatalf("%d packets, want 6", len(got))
	}
	for i, want := range []struct {
		topic   string
		id      uint16
		payload []byte
	}{
		{"a/consent", 7, []byte("a token")},
		{"a/consent", 8, tooLarge},
		{"a/revoke", 0, tooLarge},
		{"a/consent", 7, []byte("a token")},
	} {
		p, ok := got[i+1].(*packets.PublishPacket)
		if !ok {
			t.Fatalf("packet %d is %T", i+1, got[i+1])
		}
		if p.TopicName != want.topic || p.MessageID != want.id || !bytes.Equal(p.Payload, want.payload) {
			t.Errorf("packet %d: topic %q id %d payload of %d bytes", i+1, p.TopicName, p.MessageID, len(p.Payload))
		}
	}
	if len(tooLarge) != consent.MaxTokenSize+1 {
		t.Errorf("the stand-in is %d bytes", len(tooLarge))
	}
	if _, ok := got[0].(*packets.PingrespPacket); !ok {
		t.Errorf("first packet %T", got[0])
	}
	if _, ok := got[5].(*packets.PingrespPacket); !ok {
		t.Errorf("last packet %T", got[5])
	}
}
