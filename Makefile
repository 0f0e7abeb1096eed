# Embark — see README.md.
GO      ?= go
DATA    ?= embark-data
DEMO    ?= demo
DEVICES ?= 1000
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

bench: build
	$(GO) test -run XXX -bench . -benchmem ./pkg/... ./pki/...
	./test/bench/fleet.sh

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

## demo: mint $(DEVICES) devices, trust their manufacturer, import the manifest,
## onboard the fleet over CoAP/DTLS against a running `make run`, print the summary
demo: build
	@set -e; mfr=demo$$(date +%s); out=$(DEMO)/$$mfr; \
	./$(BIN)/firmware-sim factory --count $(DEVICES) --manufacturer $$mfr --out $$out; \
	./$(BIN)/embark manufacturer trust $$out/trust.json --data $(DATA); \
	./$(BIN)/embark provenance import $$out/manifest.json --data $(DATA); \
	./$(BIN)/firmware-sim fleet --factory $$out --server coaps://127.0.0.1:5684 --ca $(DATA)/ca/root.crt --mode both --renew; \
	./$(BIN)/embark device list --limit 10 --data $(DATA); \
	./$(BIN)/embark device show $$mfr:$$(echo $$mfr | tr a-z A-Z)-000001 --data $(DATA)

clean:
	rm -rf $(BIN) $(DEMO)
