package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/imcluster/imcluster/node/importer"
)

// importCmd implements `imnode import`: copy a LeanCloud app's
// conversations and history into a running imcluster (node/importer,
// docs/migrate.md).
func importCmd(args []string) error {
	fs := flag.NewFlagSet("imnode import", flag.ContinueOnError)
	var cfg importer.Config
	fs.StringVar(&cfg.Source.URL, "source-url", "", "the source's REST API base URL (LeanCloud: https://<your app's API domain>; another imcluster: http(s)://<client address>)")
	fs.StringVar(&cfg.Source.AppID, "source-app-id", "", "the app id on the source")
	fs.StringVar(&cfg.Source.MasterKey, "source-master-key", os.Getenv("IMPORT_SOURCE_MASTER_KEY"), "the source app's master key (default $IMPORT_SOURCE_MASTER_KEY)")
	fs.StringVar(&cfg.Target.URL, "target-url", "", "the target imcluster's client address as a URL (http(s)://host:port)")
	fs.StringVar(&cfg.Target.AppID, "target-app-id", "", "the app id on the target (default: --source-app-id)")
	fs.StringVar(&cfg.Target.MasterKey, "target-master-key", os.Getenv("IMPORT_TARGET_MASTER_KEY"), "the target app's master key (default $IMPORT_TARGET_MASTER_KEY)")
	fs.StringVar(&cfg.ConversationsFile, "conversations-file", "", "a _Conversation data export (JSON array, {\"results\": [...]} or JSON Lines) instead of listing the source's conversations")
	fs.StringVar(&cfg.Checkpoint, "checkpoint", "", "checkpoint file: a re-run skips what it records as done (recommended)")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "read the source and report what would be imported; write nothing")
	fs.BoolVar(&cfg.Unread, "unread", true, "copy each member's unread count (one source call per member); false marks everything read")
	fs.BoolVar(&cfg.Moderation, "moderation", true, "copy each conversation's member roles, permanent silences and blacklist (three source calls per conversation)")
	fs.IntVar(&cfg.Workers, "workers", 4, "conversations imported at once")
	fs.IntVar(&cfg.PageSize, "page-size", 1000, "history page size (1-1000)")
	progress := fs.String("progress", "auto", "bar (a progress bar with ETA), lines (a line every 5 s) or auto (bar on a terminal)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("import: unexpected argument %q", fs.Arg(0))
	}
	if cfg.Target.AppID == "" {
		cfg.Target.AppID = cfg.Source.AppID
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return errors.New("import: --workers must be 1-64")
	}
	if cfg.PageSize < 1 || cfg.PageSize > 1000 {
		return errors.New("import: --page-size must be 1-1000")
	}
	bar := false
	switch *progress {
	case "auto":
		fi, err := os.Stderr.Stat()
		bar = err == nil && fi.Mode()&os.ModeCharDevice != 0
	case "bar":
		bar = true
	case "lines":
	default:
		return fmt.Errorf("import: --progress must be auto, bar or lines, not %q", *progress)
	}
	if !bar {
		cfg.Interval = 5 * time.Second
	}
	cfg.Progress = func(p importer.Progress) { printProgress(os.Stderr, p, bar) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := importer.Run(ctx, cfg)
	if rep != nil {
		printReport(os.Stdout, rep, cfg.DryRun)
	}
	if err != nil && cfg.Checkpoint != "" {
		return fmt.Errorf("%w (run the same command again to resume from %s)", err, cfg.Checkpoint)
	}
	return err
}

// printProgress draws a one-line bar (redrawn in place) or prints a line.
func printProgress(w io.Writer, p importer.Progress, bar bool) {
	eta := "?"
	if d, ok := p.ETA(); ok {
		eta = d.Round(time.Second).String()
	}
	if p.Done {
		eta = "0s"
	}
	status := fmt.Sprintf("%d/%d conversations, %d messages (%d new), %.0f msg/s, ETA %s",
		p.ConversationsDone, p.Conversations, p.Messages, p.Imported, p.Rate(), eta)
	if !bar {
		_, _ = fmt.Fprintln(w, "import: "+status)
		return
	}
	const width = 30
	filled := width
	if p.Conversations > 0 {
		filled = width * p.ConversationsDone / p.Conversations
	}
	line := "\r[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "] " + status + "\x1b[K"
	if p.Done {
		line += "\n"
	}
	_, _ = io.WriteString(w, line)
}

func printReport(w io.Writer, r *importer.Report, dry bool) {
	verb := "imported"
	if dry {
		verb = "would import (dry run)"
	}
	_, _ = fmt.Fprintf(w, "%s: %d conversations (normal %d, chat rooms %d, system %d), %d messages read in %s (%.0f msg/s)\n",
		verb, r.Conversations, r.ByType["normal"], r.ByType["chatroom"], r.ByType["system"], r.Messages,
		r.Elapsed.Round(time.Millisecond), r.Rate())
	if dry {
		_, _ = fmt.Fprintf(w, "target already has %d of these conversations; messages it already has are skipped at import\n", r.InTarget)
	} else {
		_, _ = fmt.Fprintf(w, "new on the target: %d conversations, %d messages (%d were there already); %d conversations skipped as done by the checkpoint\n",
			r.NewConversations, r.Imported, r.Existing, r.SkippedDone)
	}
	if r.SystemSkipped > 0 {
		_, _ = fmt.Fprintf(w, "system conversations: %d records, their subscribers and messages are not imported (see docs/migrate.md)\n", r.SystemSkipped)
	}
}
