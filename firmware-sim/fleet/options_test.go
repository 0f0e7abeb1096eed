package fleet

import (
	"errors"
	"testing"
	"time"
)

func bothRenew(o *Options) {
	o.Transport, o.Mode, o.Renew, o.Concurrency, o.Retries, o.Timeout = TransportCoAP, ModeBoth, true, 8, 2, time.Second
}

func mqttDefaults(o *Options) {
	o.Transport, o.Target = TransportMQTT, "mqtts://127.0.0.1"
	o.Concurrency, o.Mode, o.Retries, o.Timeout = DefaultConcurrency, ModeEnroll, DefaultRetries, DefaultTimeout
}

func TestOptionsDefaults(t *testing.T) {
	base := Options{FactoryDir: "f", Target: "coaps://127.0.0.1:5684", RootFile: "root.pem"}
	with := func(f func(*Options)) Options {
		o := base
		f(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		in   Options
		want Options
		err  error
	}{
		{name: "ok/defaults", in: base, want: with(func(o *Options) {
			o.Transport, o.Concurrency, o.Mode, o.Retries, o.Timeout = TransportCoAP, DefaultConcurrency, ModeEnroll, DefaultRetries, DefaultTimeout
		})},
		{name: "ok/negative retries means none", in: with(func(o *Options) { o.Retries = -1 }), want: with(func(o *Options) {
			o.Transport, o.Concurrency, o.Mode, o.Retries, o.Timeout = TransportCoAP, DefaultConcurrency, ModeEnroll, 0, DefaultTimeout
		})},
		{name: "ok/mqtt with the default port",
			in:   with(func(o *Options) { o.Transport, o.Target = TransportMQTT, "mqtts://127.0.0.1" }),
			want: with(mqttDefaults)},
		{name: "ok/mqtt with a stay",
			in: with(func(o *Options) { o.Transport, o.Target, o.Stay = TransportMQTT, "mqtts://127.0.0.1", time.Minute }),
			want: with(func(o *Options) {
				mqttDefaults(o)
				o.Stay = time.Minute
			})},
		{name: "ok/coaps+tcp target", in: with(func(o *Options) { o.Target = "coaps+tcp://127.0.0.1" }),
			want: with(func(o *Options) {
				o.Target = "coaps+tcp://127.0.0.1"
				o.Transport, o.Concurrency, o.Mode, o.Retries, o.Timeout = TransportCoAP, DefaultConcurrency, ModeEnroll, DefaultRetries, DefaultTimeout
			})},
		{name: "ok/both with renew", in: with(bothRenew), want: with(bothRenew)},
		{name: "fail/no factory", in: with(func(o *Options) { o.FactoryDir = "" }), err: ErrOptions},
		{name: "fail/no target", in: with(func(o *Options) { o.Target = "" }), err: ErrOptions},
		{name: "ok/no root: zero touch", in: with(func(o *Options) { o.RootFile = "" }), want: with(func(o *Options) {
			o.RootFile, o.Transport, o.Concurrency, o.Mode, o.Retries, o.Timeout = "", TransportCoAP, DefaultConcurrency, ModeEnroll, DefaultRetries, DefaultTimeout
			o.VoucherTarget = "coap://127.0.0.1:5683"
		})},
		{name: "ok/zero touch with a voucher target", in: with(func(o *Options) { o.RootFile, o.VoucherTarget = "", "coap://127.0.0.1:15683" }),
			want: with(func(o *Options) {
				o.RootFile, o.Transport, o.Concurrency, o.Mode, o.Retries, o.Timeout = "", TransportCoAP, DefaultConcurrency, ModeEnroll, DefaultRetries, DefaultTimeout
				o.VoucherTarget = "coap://127.0.0.1:15683"
			})},
		{name: "fail/zero touch with a secure voucher target", in: with(func(o *Options) { o.RootFile, o.VoucherTarget = "", "coaps://127.0.0.1:5684" }), err: ErrOptions},
		{name: "fail/no root over mqtt", in: with(func(o *Options) { o.RootFile, o.Transport, o.Target = "", TransportMQTT, "mqtts://127.0.0.1" }), err: ErrOptions},
		{name: "fail/crts without root", in: with(func(o *Options) { o.RootFile, o.Mode = "", ModeCrts }), err: ErrOptions},
		{name: "fail/compare without root", in: with(func(o *Options) { o.RootFile, o.Mode = "", ModeCompare }), err: ErrOptions},
		{name: "fail/negative count", in: with(func(o *Options) { o.Count = -1 }), err: ErrOptions},
		{name: "fail/negative concurrency", in: with(func(o *Options) { o.Concurrency = -1 }), err: ErrOptions},
		{name: "fail/unknown mode", in: with(func(o *Options) { o.Mode = "storm" }), err: ErrOptions},
		{name: "fail/renew without enrollment", in: with(func(o *Options) { o.Mode, o.Renew = ModeCrts, true }), err: ErrOptions},
		{name: "fail/negative timeout", in: with(func(o *Options) { o.Timeout = -time.Second }), err: ErrOptions},
		{name: "fail/negative rate", in: with(func(o *Options) { o.Rate = -1 }), err: ErrOptions},
		{name: "fail/loss of one", in: with(func(o *Options) { o.Loss = 1 }), err: ErrOptions},
		{name: "fail/negative loss", in: with(func(o *Options) { o.Loss = -0.1 }), err: ErrOptions},
		{name: "fail/unknown transport", in: with(func(o *Options) { o.Transport = "http" }), err: ErrOptions},
		{name: "fail/mqtt with a coaps target", in: with(func(o *Options) { o.Transport = TransportMQTT }), err: ErrOptions},
		{name: "fail/mqtt with a plain mqtt target",
			in: with(func(o *Options) { o.Transport, o.Target = TransportMQTT, "mqtt://127.0.0.1:1883" }), err: ErrOptions},
		{name: "fail/coap with an mqtts target", in: with(func(o *Options) { o.Target = "mqtts://127.0.0.1" }), err: ErrOptions},
		{name: "fail/plain coap target", in: with(func(o *Options) { o.Target = "coap://127.0.0.1:5683" }), err: ErrOptions},
		{name: "ok/stay over coap", in: with(func(o *Options) { o.Stay = time.Minute }), want: with(func(o *Options) {
			o.Transport, o.Concurrency, o.Mode, o.Retries, o.Timeout = TransportCoAP, DefaultConcurrency, ModeEnroll, DefaultRetries, DefaultTimeout
			o.Stay = time.Minute
		})},
		{name: "fail/negative stay over coap", in: with(func(o *Options) { o.Stay = -time.Second }), err: ErrOptions},
		{name: "fail/negative stay",
			in: with(func(o *Options) { o.Transport, o.Target, o.Stay = TransportMQTT, "mqtts://127.0.0.1", -time.Second }), err: ErrOptions},
		{name: "fail/stay without enrollment",
			in: with(func(o *Options) {
				o.Transport, o.Target, o.Stay, o.Mode = TransportMQTT, "mqtts://127.0.0.1", time.Minute, ModeCrts
			}), err: ErrOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.withDefaults()
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("withDefaults = %+v, want %+v", got, tc.want)
			}
		})
	}
}
