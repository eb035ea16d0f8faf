//go:build tools

// Package tools pins kube-apiserver and kubectl (k8s.io/kubernetes/cmd/...) as dependencies of this
// module, so `go build k8s.io/kubernetes/cmd/kube-apiserver` uses the versions go.sum fixes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
