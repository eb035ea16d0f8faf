//go:build tools

// Package tools pins the helm CLI (helm.sh/helm/v4/cmd/helm) for the tests that render and install
// deploy/helm/nodepath, so `go build helm.sh/helm/v4/cmd/helm` uses the versions go.sum fixes.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
