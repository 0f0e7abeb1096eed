package campaign

import (
	"context"

	"github.com/embark-iot/embark/pkg/store"
)

// Item records are written by a few writers, many in one transaction: the
// asks and completions of a campaign over thousands of devices cost a few
// commits of the registry, not one each.
const (
	itemWriters  = 4
	maxItemBatch = 512
)

// itemWrite is one item record waiting to be written.
type itemWrite struct {
	campaign string
	it       Item
	done     chan error
}

// writeItems writes the queued item records until ctx ends. A batch under
// way is written to the end.
func (r *Runner) writeItems(ctx context.Context) {
	batch := make([]itemWrite, 0, maxItemBatch)
	for {
		select {
		case w := <-r.writes:
			batch = append(batch[:0], w)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < maxItemBatch {
			select {
			case w := <-r.writes:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		err := r.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
			for _, w := range batch {
				if err := putItem(tx, w.campaign, w.it); err != nil {
					return err
				}
			}
			return nil
		})
		for _, w := range batch {
			w.done <- err
		}
		clear(batch)
	}
}

// writeItem queues an item record and waits until it is written.
func (r *Runner) writeItem(ctx context.Context, campaign string, it Item) error {
	w := itemWrite{campaign: campaign, it: it, done: make(chan error, 1)}
	select {
	case r.writes <- w:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The channel is unbuffered: a write handed over was taken by a
	// writer, which answers it even if ctx ends meanwhile.
	return <-w.done
}
