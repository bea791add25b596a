// tlogcheck reads a c2sp.org/tlog-tiles log over HTTP with Go's golang.org/x/mod/sumdb/tlog and
// sumdb/note (the reference implementation nospy's tiles must satisfy) and checks all of it: the
// checkpoint's signature, the tree hash the hash tiles give, and every entry of the entry
// bundles against the signed root with an inclusion proof built from the tiles.
//
//	tlogcheck BASE_URL VERIFIER_KEY
//
// Prints "ok SIZE ROOT" on success; exits 1 naming the first fault. Built against Debian's
// golang-golang-x-mod-dev (GOPATH=/usr/share/gocode GO111MODULE=off); nospy's tests run it.
package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func get(url string) ([]byte, error) {
	r, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		return nil, fmt.Errorf("%s: HTTP %d", url, r.StatusCode)
	}
	return io.ReadAll(r.Body)
}

// c2spPath is a tile's path in tlog-tiles (tile/L/N[.p/W], tile/entries/N[.p/W]) rather than
// sumdb's (tile/H/L/N, tile/H/data/N).
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	p = strings.Replace(p, "tile/8/data/", "tile/entries/", 1)
	return strings.Replace(p, "tile/8/", "tile/", 1)
}

type tiles struct{ base string }

func (r tiles) Height() int { return 8 }

func (r tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		b, err := get(r.base + "/" + c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(f string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: tlogcheck BASE_URL VERIFIER_KEY")
	}
	base := strings.TrimRight(os.Args[1], "/")
	v, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg, err := get(base + "/checkpoint")
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 || lines[0] != v.Name() {
		fail("checkpoint: not a checkpoint of %s: %q", v.Name(), n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root: %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	tr := tiles{base}
	hr := tlog.TileHashReader(tree, tr)
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if th != root {
		fail("the hash tiles give root %v, the checkpoint says %v", th, root)
	}
	for b := int64(0); b*256 < size; b++ {
		w := size - b*256
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: 8, L: -1, N: b, W: int(w)}
		data, err := get(base + "/" + c2spPath(t))
		if err != nil {
			fail("%v", err)
		}
		for k := int64(0); k < w; k++ {
			if len(data) < 2 {
				fail("%s: entry %d: truncated", c2spPath(t), k)
			}
			l := int(data[0])<<8 | int(data[1])
			if len(data) < 2+l {
				fail("%s: entry %d: truncated", c2spPath(t), k)
			}
			entry := data[2 : 2+l]
			data = data[2+l:]
			i := b*256 + k
			p, err := tlog.ProveRecord(size, i, hr)
			if err != nil {
				fail("proof of %d: %v", i, err)
			}
			if err := tlog.CheckRecord(p, size, root, i, tlog.RecordHash(entry)); err != nil {
				fail("entry %d: %v", i, err)
			}
		}
		if len(data) != 0 {
			fail("%s: %d bytes after its entries", c2spPath(t), len(data))
		}
	}
	fmt.Printf("ok %d %v\n", size, root)
}
