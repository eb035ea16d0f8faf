// Pins the hubble CLI and hubble-relay that the e2e tier drives against nodepath's Hubble API
// (scripts/lib/gotools.sh builds both from this one pin). github.com/cilium/cilium carries
// replace lines, so neither `go install` nor a dependent module can build ./hubble or
// ./hubble-relay; the tooling verifies the module zip against this go.sum, copies the module out
// of the module cache and runs `go build -mod=mod ./hubble` (./hubble-relay) inside it.
module nodepath.local/tools/hubble

go 1.21

require github.com/cilium/cilium v1.20.2
