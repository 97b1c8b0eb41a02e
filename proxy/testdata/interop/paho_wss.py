"""paho-mqtt (Python, Debian's python3-paho-mqtt) over wss through tlsfront.

It connects with a will message and the default keepalive (60 s), says
"connected", then stays idle until the test writes a line on stdin: by
then tlsfront has pinged it several times. Then it publishes to itself,
waits for the message, disconnects cleanly and prints "ok". Any
disconnect along the way is a failure.

usage: /usr/bin/python3 paho_wss.py PORT ca.pem topic will_topic
"""
import sys
import threading

import paho.mqtt.client as mqtt

port, ca, topic, will_topic = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
connected = threading.Event()
got = threading.Event()
gone = threading.Event()
disconnects = []


def on_connect(client, userdata, flags, rc):
    if rc != 0:
        print("connect refused:", rc, flush=True)
        sys.exit(1)
    connected.set()


def on_disconnect(client, userdata, rc):
    disconnects.append(rc)
    gone.set()


def on_message(client, userdata, msg):
    if msg.payload == b"still here":
        got.set()


c = mqtt.Client(client_id="paho-python-wss", transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=ca)
c.will_set(will_topic, "paho went away", qos=1)
c.on_connect = on_connect
c.on_disconnect = on_disconnect
c.on_message = on_message
c.connect("localhost", port)  # the default keepalive, 60 s
c.loop_start()
if not connected.wait(10):
    print("not connected within 10 s", flush=True)
    sys.exit(1)
c.subscribe(topic, qos=1)
print("connected", flush=True)
sys.stdin.readline()  # the test says when the idle time is over
if disconnects:
    print("disconnected while idle:", disconnects, flush=True)
    sys.exit(1)
info = c.publish(topic, "still here", qos=1)
if not got.wait(10):
    print("own message did not arrive", flush=True)
    sys.exit(1)
# The broker's PUBACK comes after the message itself. paho closes its
# socket right after sending DISCONNECT; a PUBACK arriving unread by then
# turns the close into a reset, which can destroy the DISCONNECT on its
# way (the broker then publishes the will). So let nothing be in flight.
info.wait_for_publish(10)
if not info.is_published():
    print("no PUBACK within 10 s", flush=True)
    sys.exit(1)
c.disconnect()
# Stopping the loop at once can drop the queued DISCONNECT (the broker
# would then publish the will): wait until the loop has sent it and closed.
if not gone.wait(10):
    print("no disconnect within 10 s", flush=True)
    sys.exit(1)
c.loop_stop()
if disconnects != [0]:
    print("unexpected disconnects:", disconnects, flush=True)
    sys.exit(1)
print("ok", flush=True)
