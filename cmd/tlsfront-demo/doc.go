// Command tlsfront-demo is what `make run` starts: a local CA and a
// certificate for localhost, a real MQTT broker (Mosquitto when installed,
// else an embedded one) and tlsfront in front of it for mqtts and wss. It
// checks both paths itself and prints the commands to try them.
//
// `tlsfront-demo client` is a small MQTT client for trying wss without
// other tools.
package main
