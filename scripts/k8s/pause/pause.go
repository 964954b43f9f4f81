// The pod sandbox ("pause") process for the test cluster's kubelet: it holds the pod's namespaces
// and does nothing until it is told to stop. Built static (CGO_ENABLED=0) into an image FROM
// scratch, since no image can be pulled here.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
