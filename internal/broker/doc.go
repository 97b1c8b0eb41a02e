// Package broker runs a real MQTT broker for the demo and for tests: the
// Mosquitto binary when it is installed, else an embedded Go broker
// (mochi-mqtt), so that both run on any machine.
package broker
