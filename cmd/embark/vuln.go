package main

import (
	"context"
	"fmt"
	"io"
)

func runVuln(ctx context.Context, args []string, out io.Writer) error {
	return fmt.Errorf("%w: vuln import FILE | list", errUsage)
}
