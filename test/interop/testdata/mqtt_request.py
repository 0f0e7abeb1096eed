#!/usr/bin/env python3
"""Send one MQTT v5 request and print the answer, with Eclipse Paho's
Python client (Debian python3-paho-mqtt), independent of Embark's Go code.

mosquitto_rr 2.0.11 (Debian 12) sends an empty message for -f and -s, so
binary requests go through this script; mosquitto_rr carries the text-free
ones (the nonce request).

Usage:

    python3 mqtt_request.py --host H --port P --cafile ROOT --cert CERT \\
        --key KEY --id CLIENT_ID --topic T --response-topic R --in FILE \\
        [--timeout 10]

Connects over TLS with the client certificate, subscribes to the response
topic, publishes FILE (QoS 1) with the response topic and fresh correlation
data, and prints in hex the first message that comes back with the same
correlation data. Exits 1 on timeout or failure.
"""

import argparse
import os
import ssl
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main():
    ap = argparse.ArgumentParser()
    for name in ("host", "cafile", "cert", "key", "id", "topic", "response-topic", "in"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=10)
    a = ap.parse_args()

    payload = open(getattr(a, "in"), "rb").read()
    corr = os.urandom(16)
    subscribed = threading.Event()
    answered = threading.Event()
    answer = {}

    c = mqtt.Client(client_id=a.id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=a.cafile, certfile=a.cert, keyfile=a.key, cert_reqs=ssl.CERT_REQUIRED)

    def on_connect(client, userdata, flags, rc, properties=None):
        if rc != 0:
            answer["error"] = "connect refused: %s" % rc
            answered.set()
            return
        client.subscribe(a.response_topic, qos=1)

    def on_subscribe(client, userdata, mid, granted, properties=None):
        subscribed.set()

    def on_message(client, userdata, msg):
        got = getattr(msg.properties, "CorrelationData", None)
        if got == corr:
            answer["payload"] = msg.payload
            answered.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(a.host, a.port, keepalive=30)
    c.loop_start()
    try:
        if not subscribed.wait(a.timeout):
            sys.exit("no SUBACK within %ss" % a.timeout)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = a.response_topic
        props.CorrelationData = corr
        c.publish(a.topic, payload, qos=1, properties=props).wait_for_publish(a.timeout)
        if not answered.wait(a.timeout):
            sys.exit("no answer within %ss" % a.timeout)
        if "error" in answer:
            sys.exit(answer["error"])
        print(answer["payload"].hex())
    finally:
        c.disconnect()
        c.loop_stop()


if __name__ == "__main__":
    main()
