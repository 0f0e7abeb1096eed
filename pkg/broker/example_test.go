package broker_test

import (
	"fmt"

	"github.com/embark-iot/embark/pkg/broker"
)

func ExampleFilterContains() {
	zone := "plant/+/alarms"
	for _, sub := range []string{"plant/7/alarms", "plant/+/alarms", "plant/#", "plant/7/alarms/#"} {
		fmt.Println(sub, broker.FilterContains(zone, sub))
	}
	// Output:
	// plant/7/alarms true
	// plant/+/alarms true
	// plant/# false
	// plant/7/alarms/# false
}

func ExampleNamespace() {
	fmt.Println(broker.Namespace("urn:dev:embark:acme:A1") + "/" + broker.TopicEnroll)
	// Output: embark/v1/urn:dev:embark:acme:A1/enroll
}
