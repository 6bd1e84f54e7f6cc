// A minimal CoreDNS for the test cluster: cluster DNS only. The stock binary's plugin list pulls
// in cloud SDKs and a forwarder; the test cluster must never reach any outside resolver, so
// neither is linked. Plugins register themselves in init(); dnsserver.Directives keeps their order.
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
