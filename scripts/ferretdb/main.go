// Command ferretdb runs FerretDB with its SQLite backend for the local servers.
//
// It embeds the ferretdb package instead of `go install .../cmd/ferretdb`, whose binary panics at
// start because build/version/version.txt is not part of the published module.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // the driver FerretDB registers too: the same SQLite, the same locks
)

// A database's write-ahead log is checkpointed and truncated once it is larger than this.
//
// SQLite's automatic checkpoints (every 1000 pages) are PASSIVE: they copy only the pages no
// reader still needs and start the log over only when no reader uses it. Under load FerretDB's
// readers overlap (up to 100 connections per database), so the log was never started over: it
// grew to 8.5 GB in the full benchmark, and a page read searches the log's whole index.
const walLimit = 64 << 20

// How often the size of every log is looked at (a stat each: nothing is opened below the limit).
const walCheck = time.Second

// A truncating checkpoint holds writers off while it waits for the readers of older snapshots (and
// then for the readers that started meanwhile): walWaitFirst at first, twice as long after each
// time they kept it from truncating, at most walWaitMost (FerretDB's writers give up after 10 s);
// after a refused try writers get four times the wait before the next. Readers of a few hundred
// milliseconds (a $in of 500 users) are outlasted this way. A reader of minutes (a scan of a
// large collection, such as the timer sweep over a million users) is not, and holding writers off
// for it stalled every write for seconds at a time in the full benchmark: so a try is skipped
// while a PASSIVE checkpoint (which holds nobody off) stops at the same frame as the last refused
// one, the sign that the same reader still holds the log. (An update held its query's reader
// while it waited for the write lock, so no checkpoint could ever finish: see the patch.)
const (
	walWaitFirst = 250 * time.Millisecond
	walWaitMost  = 2 * time.Second
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
		// journal_size_limit: a log that starts over is also cut back to walLimit on disk.
		SQLiteURL: fmt.Sprintf(
			"file:%s/?_pragma=synchronous(normal)&_pragma=journal_size_limit(%d)", *dir, walLimit,
		),
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	go checkpointLargeLogs(ctx, *dir)

	log.Printf("FerretDB listening on %s, SQLite in %s", *listen, *dir)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// refusal is what a log's last refused checkpoint left: how long the next may hold writers off,
// and the frame where its PASSIVE copy stopped.
type refusal struct {
	wait    time.Duration
	stopped int
}

// checkpointLargeLogs truncates, every walCheck, the write-ahead logs grown over walLimit.
func checkpointLargeLogs(ctx context.Context, dir string) {
	refused := map[string]refusal{}
	pause := walCheck
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = walCheck
		logs, err := filepath.Glob(filepath.Join(dir, "*.sqlite-wal"))
		if err != nil {
			log.Printf("checkpoint: listing %s: %v", dir, err)
			continue
		}
		for _, wal := range logs {
			database := strings.TrimSuffix(wal, "-wal")
			if info, err := os.Stat(wal); err != nil || info.Size() <= walLimit || !exists(database) {
				delete(refused, wal) // a log small enough, or left behind by a dropped database
				continue
			}
			last, again := refused[wal]
			wait := max(last.wait, walWaitFirst)
			stopped, held, err := checkpoint(ctx, database, wait, again, last.stopped)
			switch {
			case held:
				refused[wal] = refusal{wait, stopped}
			case err != nil:
				refused[wal] = refusal{min(2*wait, walWaitMost), stopped}
				pause = max(pause, 4*wait)
				log.Printf("checkpoint: %s: %v (tried again, waiting %s)", wal, err, refused[wal].wait)
			default:
				delete(refused, wal)
			}
		}
	}
}

// exists says whether a database file is still there: FerretDB drops a database by removing its
// file and leaves the log beside it, which no checkpoint can open.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkpoint copies a database's log into it and truncates the log, on a connection of its own.
// PASSIVE first copies what it can without holding writers off (`stopped` is the frame where it
// stopped); unless it stopped where the last refused try's did or found another checkpoint
// running (`held`: look again later), TRUNCATE then copies the rest with writers held off, waits
// (the busy timeout, `wait`) for readers of older snapshots to finish, and truncates the log.
func checkpoint(
	ctx context.Context, path string, wait time.Duration, again bool, lastStopped int,
) (stopped int, held bool, err error) {
	// mode=rw: a database dropped since the stat is not created again.
	uri := fmt.Sprintf("file:%s?mode=rw&_pragma=busy_timeout(%d)",
		(&url.URL{Path: path}).EscapedPath(), wait.Milliseconds())
	db, err := sql.Open("sqlite", uri)
	if err != nil {
		return 0, false, err
	}
	defer db.Close()
	var busy, frames, copied int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(
		&busy, &frames, &copied,
	); err != nil {
		return 0, false, err
	}
	if busy != 0 { // a writer's automatic checkpoint is running: look again at the next check
		return lastStopped, true, nil
	}
	if again && copied < frames && copied == lastStopped {
		return copied, true, nil
	}
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(
		&busy, &frames, &copied,
	); err != nil {
		return copied, false, err
	}
	if busy != 0 {
		return copied, false, fmt.Errorf(
			"readers still on the log (%d of %d frames copied)", copied, frames,
		)
	}
	return copied, false, nil
}
