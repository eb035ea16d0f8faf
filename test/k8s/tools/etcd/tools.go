//go:build tools

// Package tools pins etcd (go.etcd.io/etcd/server/v3) and etcdctl (go.etcd.io/etcd/etcdctl/v3) as
// dependencies of this module, so their builds use the versions go.sum fixes.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
