package mqttbus

import (
	"strings"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// inboundStore is paho's store without its outbound half: paho keeps no
// outbound packet, so it can never resend one (the store's outbox does, in
// seq order), and its resume cannot race its writer over one
// (eclipse-paho/paho.mqtt.golang#703). Inbound state is kept as paho's
// memory store keeps it.
type inboundStore struct {
	*mqtt.MemoryStore
}

func newInboundStore() *inboundStore { return &inboundStore{mqtt.NewMemoryStore()} }

// outboundPrefix is the prefix of paho's keys for outbound packets.
const outboundPrefix = "o."

// Put keeps only inbound packets.
func (s *inboundStore) Put(key string, m packets.ControlPacket) {
	if !strings.HasPrefix(key, outboundPrefix) {
		s.MemoryStore.Put(key, m)
	}
}
