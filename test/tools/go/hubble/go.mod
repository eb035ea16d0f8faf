// Pins the hubble CLI the e2e tier talks to nodepath's Hubble API with (scripts/lib/gotools.sh
// builds it). github.com/cilium/cilium carries replace lines, so neither `go install` nor a
// dependent module can build ./hubble; the tooling verifies the module zip against this go.sum,
// copies the module out of the module cache and runs `go build -mod=mod ./hubble` inside it.
module nodepath.local/tools/hubble

go 1.21

require github.com/cilium/cilium v1.20.2
