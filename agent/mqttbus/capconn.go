package mqttbus

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"

	"github.com/consentcam/consentcam/consent"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MaxMessage is the largest PUBLISH the agent takes in whole. paho reads a
// packet into memory before it hands it on, so a larger one (a broker
// without max_packet_size, a hostile client) is cut on the wire instead:
// its payload is read and dropped as it arrives, and paho gets the same
// packet with a stand-in payload one byte over consent.MaxTokenSize, which
// the core refuses as too-large, audits and acknowledges.
const MaxMessage = 64 << 10

// tooLarge is the stand-in payload of a cut message.
var tooLarge = bytes.Repeat([]byte{'x'}, consent.MaxTokenSize+1)

// dial opens the connection to the broker for paho, as paho would, and
// wraps it so that no message over MaxMessage is read whole.
func dial(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	d := &net.Dialer{Timeout: o.ConnectTimeout}
	var c net.Conn
	var err error
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err = d.Dial("tcp", uri.Host)
	case "ssl", "tls", "mqtts":
		c, err = tls.DialWithDialer(d, "tcp", uri.Host, o.TLSConfig)
	case "ws", "wss":
		u := *uri
		u.User = nil
		var tc *tls.Config
		if uri.Scheme == "wss" {
			tc = o.TLSConfig
		}
		c, err = mqtt.NewWebsocket(u.String(), tc, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	default:
		return nil, errors.New("unknown protocol " + uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return &capConn{Conn: c, limit: MaxMessage}, nil
}

// capConn reads MQTT packets from the broker and hands them on unchanged,
// but for a PUBLISH over limit, which it cuts (see MaxMessage).
type capConn struct {
	net.Conn
	limit int
	out   []byte // bytes ready for the reader
	skip  int    // bytes of a cut payload still to read and drop
	err   error
}

func (c *capConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.err = c.next()
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// next reads the next packet's header from the connection and readies what
// to hand on: the whole packet, or, for a cut PUBLISH, its stand-in (the
// dropped payload read meanwhile).
func (c *capConn) next() error {
	if err := c.drop(); err != nil {
		return err
	}
	var first [1]byte
	if _, err := io.ReadFull(c.Conn, first[:]); err != nil {
		return err
	}
	length, lenBytes, err := c.readLength()
	if err != nil {
		return err
	}
	const publish = 3
	if first[0]>>4 != publish || length <= c.limit {
		c.out = append(append(first[:], lenBytes...), make([]byte, length)...)
		_, err := io.ReadFull(c.Conn, c.out[1+len(lenBytes):])
		return err
	}
	// Topic and packet id, then the payload, which is dropped.
	var tl [2]byte
	if _, err := io.ReadFull(c.Conn, tl[:]); err != nil {
		return err
	}
	head := int(binary.BigEndian.Uint16(tl[:]))
	if qos := first[0] >> 1 & 3; qos > 0 {
		head += 2
	}
	if 2+head > length {
		return errors.New("mqtt: malformed PUBLISH from the broker")
	}
	topic := make([]byte, head)
	if _, err := io.ReadFull(c.Conn, topic); err != nil {
		return err
	}
	c.skip = length - 2 - head
	body := append(append(tl[:], topic...), tooLarge...)
	c.out = append(append([]byte{first[0]}, encodeLength(len(body))...), body...)
	return nil
}

// drop reads and drops what is left of a cut payload.
func (c *capConn) drop() error {
	if c.skip == 0 {
		return nil
	}
	_, err := io.CopyN(io.Discard, c.Conn, int64(c.skip))
	c.skip = 0
	return err
}

// readLength reads an MQTT remaining length (1 to 4 bytes) and returns it
// with its bytes.
func (c *capConn) readLength() (int, []byte, error) {
	var raw []byte
	length, mult := 0, 1
	for i := 0; i < 4; i++ {
		var b [1]byte
		if _, err := io.ReadFull(c.Conn, b[:]); err != nil {
			return 0, nil, err
		}
		raw = append(raw, b[0])
		length += int(b[0]&127) * mult
		if b[0]&128 == 0 {
			return length, raw, nil
		}
		mult *= 128
	}
	return 0, nil, errors.New("mqtt: malformed remaining length from the broker")
}

// encodeLength writes an MQTT remaining length.
func encodeLength(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 128
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

var _ net.Conn = (*capConn)(nil)
