// Runs Istio's istio-iptables command, the same code `pilot-agent istio-iptables` runs
// in istio-init; built by hack/build-istio-binaries.sh as a reference for the tests.
package main

import (
	"os"

	"istio.io/istio/pkg/log"
	"istio.io/istio/tools/istio-iptables/pkg/cmd"
)

func main() {
	opts := log.DefaultOptions()
	root := cmd.GetCommand(opts)
	opts.AttachCobraFlags(root)
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
