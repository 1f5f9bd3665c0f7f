package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/imcluster/imcluster/node/store"
)

// upgradeStore implements `imnode upgrade-store`: it raises a stopped
// node's store to this build's format (store.Upgrade). The node must be
// stopped: the store's lock refuses a running one.
func upgradeStore(args []string) error {
	fs := flag.NewFlagSet("imnode upgrade-store", flag.ContinueOnError)
	dir := fs.String("data-dir", os.Getenv("IMNODE_DATA_DIR"), "the stopped node's data directory (default $IMNODE_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("upgrade-store: --data-dir is required")
	}
	id, err := store.ReadIdentity(*dir)
	switch {
	case errors.Is(err, store.ErrNoIdentity):
	case err != nil:
		return err
	case id.DataFormat > store.DataFormat:
		return fmt.Errorf("upgrade-store: data format %d is newer than this imnode's %d", id.DataFormat, store.DataFormat)
	}
	before, err := store.Upgrade(store.Config{Dir: *dir})
	if err != nil {
		return err
	}
	if before == store.PebbleFormat {
		fmt.Printf("%s: store already at format %d\n", *dir, store.PebbleFormat)
		return nil
	}
	fmt.Printf("%s: store raised from format %d to %d\n", *dir, before, store.PebbleFormat)
	return nil
}
