//go:build tools

// Package tools pins cnitool (github.com/containernetworking/cni/cnitool) as a dependency of this
// module, so `go build github.com/containernetworking/cni/cnitool` uses the versions go.sum fixes.
package tools

import _ "github.com/containernetworking/cni/cnitool"
