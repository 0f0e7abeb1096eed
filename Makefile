# Embark — see README.md.
GO      ?= go
DATA    ?= embark-data
DEMO    ?= demo
DEVICES ?= 1000
MASA_PORT ?= 8444
BIN     := bin

.PHONY: build run test test-e2e test-interop fuzz bench lint demo clean

build:
	$(GO) build -o $(BIN)/embark ./cmd/embark
	$(GO) build -o $(BIN)/firmware-sim ./firmware-sim

## run: start Embark with embedded defaults (CA, registry, CoAP listeners) in $(DATA)
run:
	$(GO) run ./cmd/embark serve --data $(DATA)

## test: everything CI runs: unit, end-to-end and interop tests with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -timeout 20m ./...

test-e2e:
	$(GO) test -race -count=1 -v ./test/e2e/...

test-interop:
	$(GO) test -count=1 -v ./test/interop/...

fuzz:
	$(GO) test -run XXX -fuzz FuzzOpen -fuzztime 60s ./pkg/manifest/
	$(GO) test -run XXX -fuzz FuzzVerifyReader -fuzztime 60s -fuzzminimizetime 5s ./pkg/manifest/
	$(GO) test -run XXX -fuzz FuzzParsePublicKey -fuzztime 30s ./pkg/hybridsig/
	$(GO) test -run XXX -fuzz FuzzParseCSR -fuzztime 30s ./pkg/onboard/
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 30s ./pkg/vuln/
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 30s -fuzzminimizetime 5s ./policy/
	$(GO) test -run XXX -fuzz FuzzVerify -fuzztime 30s ./pkg/voucher/
	$(GO) test -run XXX -fuzz FuzzOpenRequests -fuzztime 30s ./pkg/voucher/
	$(GO) test -run XXX -fuzz FuzzOpenEnvelopes -fuzztime 30s ./pkg/voucher/

bench: build
	$(GO) test -run XXX -bench . -benchmem ./pkg/... ./pki/...
	./test/bench/fleet.sh

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

## demo: mint $(DEVICES) devices sold to this Embark's owner, start their
## manufacturer's voucher service (MASA), trust the manufacturer, import the
## manifest, set its MASA, onboard the fleet zero-touch over CoAP/DTLS against
## a running `make run` (each device trusts Embark only once its voucher says
## so), print the summary
demo: build
	@set -e; mfr=demo$$(date +%s); out=$(DEMO)/$$mfr; \
	./$(BIN)/firmware-sim factory --count $(DEVICES) --manufacturer $$mfr --owner-key $(DATA)/owner.pub --out $$out; \
	./$(BIN)/firmware-sim masa --factory $$out --listen 127.0.0.1:$(MASA_PORT) > $$out/masa.out 2>&1 & masa=$$!; \
	trap "kill $$masa" EXIT; \
	./$(BIN)/embark manufacturer trust $$out/trust.json --data $(DATA); \
	./$(BIN)/embark provenance import $$out/manifest.json --data $(DATA); \
	for i in 1 2 3 4 5 6 7 8 9 10; do \
		./$(BIN)/embark manufacturer masa $$mfr https://127.0.0.1:$(MASA_PORT) --data $(DATA) && break; sleep 0.5; \
	done; \
	./$(BIN)/firmware-sim fleet --factory $$out --server coaps://127.0.0.1:5684 --mode both --renew; \
	./$(BIN)/embark device list --limit 10 --data $(DATA); \
	./$(BIN)/embark device show $$mfr:$$(echo $$mfr | tr a-z A-Z)-000001 --data $(DATA)

clean:
	rm -rf $(BIN) $(DEMO)
