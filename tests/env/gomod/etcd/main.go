// etcd for the test bed, built from etcd's published Go modules (see ../../install-k8s.sh).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
