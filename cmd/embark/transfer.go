package main

import (
	"context"
	"fmt"
	"io"
)

func runTransfer(ctx context.Context, args []string, out io.Writer) error {
	return fmt.Errorf("%w: provenance transfer ...", errUsage)
}
