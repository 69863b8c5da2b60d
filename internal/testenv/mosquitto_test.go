package testenv_test

import (
	"testing"
	"time"

	"github.com/consentcam/consentcam/internal/testenv"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func TestMosquittoRestart(t *testing.T) {
	m := testenv.StartMosquitto(t)
	got := make(chan string, 10)
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("sub").SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(200 * time.Millisecond))
	if tk := sub.Connect(); tk.Wait() && tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	if tk := sub.Subscribe("a/b", 1, func(c mqtt.Client, msg mqtt.Message) { got <- string(msg.Payload()) }); tk.Wait() && tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	m.Stop()
	m.Start()
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(m.URL()).SetClientID("pub"))
	if tk := pub.Connect(); tk.Wait() && tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	pub.Publish("a/b", 1, false, "hello").Wait()
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatal(s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message after restart\n" + m.Log())
	}
}
