// Command ferretdb runs FerretDB with its SQLite backend for the local servers.
//
// It embeds the ferretdb package instead of `go install .../cmd/ferretdb`, whose binary panics at
// start because build/version/version.txt is not part of the published module.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "MongoDB wire protocol address")
	dir := flag.String("sqlite-dir", "./data", "folder for FerretDB's SQLite databases")
	flag.Parse()

	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  "sqlite",
		// WAL with synchronous=NORMAL: a commit survives the process crashing (what the fault
		// suite does) without an fsync each, which made every write cost about 60% more.
		// Like MongoDB's default (the journal is flushed every 100 ms), the last commits can
		// be lost to a power cut or an OS crash.
		SQLiteURL: "file:" + *dir + "/?_pragma=synchronous(normal)",
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Printf("FerretDB listening on %s, SQLite in %s", *listen, *dir)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
