// Command interop checks a running Tally server against an independent implementation of
// the same formats: Go's golang.org/x/mod/sumdb/note (signed notes) and
// golang.org/x/mod/sumdb/tlog (RFC 6962 trees, proofs and hash tiles).
//
// Every hash, proof and signature check below is done by x/mod; this file only fetches bytes
// over HTTP, parses the checkpoint body and the C2SP entry bundles, and compares results.
//
// It is run by crates/tally-server/tests/go_interop.rs, in GOPATH mode and offline:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$(mktemp -d) GOPROXY=off GOFLAGS= \
//	    go run interop.go -base http://127.0.0.1:7700 -tenant default -token tly_... \
//	    -vkey 'tally.localhost+1234abcd+AX...' [-indexes 0,1,350,699]
//
// Each flag may also be given in the environment: TALLY_BASE, TALLY_TENANT, TALLY_TOKEN,
// TALLY_VKEY, TALLY_INDEXES. Exit status: 0 when every check passes, 1 when one fails,
// 2 on bad usage. (Needs Debian's golang-go and golang-golang-x-mod-dev.)
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const tileHeight = 8

// ---------------------------------------------------------------------------------------------
// Bookkeeping of checks.

type checker struct {
	passed   int
	failures []string
}

func (c *checker) ok(format string, args ...interface{}) {
	c.passed++
	if verbose {
		fmt.Printf("ok    %s\n", fmt.Sprintf(format, args...))
	}
}

func (c *checker) fail(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	c.failures = append(c.failures, msg)
	fmt.Printf("FAIL  %s\n", msg)
}

// check records err == nil as a pass and anything else as a failure.
func (c *checker) check(err error, format string, args ...interface{}) bool {
	what := fmt.Sprintf(format, args...)
	if err != nil {
		c.fail("%s: %v", what, err)
		return false
	}
	c.ok("%s", what)
	return true
}

// mustReject records err != nil as a pass: the input was tampered with on purpose.
func (c *checker) mustReject(err error, format string, args ...interface{}) {
	what := fmt.Sprintf(format, args...)
	if err == nil {
		c.fail("%s: ACCEPTED, but it was tampered with and must be rejected", what)
		return
	}
	c.ok("%s rejected (%v)", what, err)
}

var verbose = os.Getenv("TALLY_INTEROP_VERBOSE") != ""

// ---------------------------------------------------------------------------------------------
// HTTP.

type client struct {
	base   string
	tenant string
	token  string
	http   *http.Client
}

func (c *client) get(path string) ([]byte, http.Header, error) {
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: reading body: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return body, resp.Header, nil
}

func (c *client) getJSON(path string, v interface{}) error {
	body, _, err := c.get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: bad JSON: %v", path, err)
	}
	return nil
}

func (c *client) logsPath() string {
	return "/logs/" + url.PathEscape(c.tenant)
}

func (c *client) q() string {
	return "tenant=" + url.QueryEscape(c.tenant)
}

// ---------------------------------------------------------------------------------------------
// Checkpoints.

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// parseCheckpoint parses a C2SP tlog-checkpoint body: origin line, decimal size, base64 root,
// then optional extension lines. (tlog.ParseTree wants Go's sumdb header, so it is not used.)
func parseCheckpoint(text string) (checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return checkpoint{}, errors.New("checkpoint body does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, fmt.Errorf("checkpoint body has %d lines, want at least 3", len(lines))
	}
	if lines[0] == "" {
		return checkpoint{}, errors.New("empty origin line")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return checkpoint{}, fmt.Errorf("bad tree size line %q", lines[1])
	}
	root, err := decodeHash(lines[2])
	if err != nil {
		return checkpoint{}, fmt.Errorf("bad root hash line: %v", err)
	}
	return checkpoint{origin: lines[0], size: size, root: root}, nil
}

func decodeHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return h, fmt.Errorf("%q is not standard base64: %v", s, err)
	}
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("%q decodes to %d bytes, want %d", s, len(b), tlog.HashSize)
	}
	copy(h[:], b)
	return h, nil
}

func decodeHashes(list []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, len(list))
	for i, s := range list {
		h, err := decodeHash(s)
		if err != nil {
			return nil, fmt.Errorf("proof[%d]: %v", i, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// openCheckpoint verifies a signed note with note.Open and parses its text.
func openCheckpoint(msg []byte, verifiers note.Verifiers) (checkpoint, *note.Note, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return checkpoint{}, nil, err
	}
	cp, err := parseCheckpoint(n.Text)
	return cp, n, err
}

// ---------------------------------------------------------------------------------------------
// Tiles: a tlog.TileReader over the C2SP tlog-tiles layout.

// encodeIndex spells a tile index in zero-padded 3-digit groups, all but the last prefixed
// with "x": 1234067 -> x001/x234/067.
func encodeIndex(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// tilePath is the C2SP path of a hash tile (no height segment, unlike tlog.Tile.Path).
func tilePath(t tlog.Tile) string {
	p := fmt.Sprintf("tile/%d/%s", t.L, encodeIndex(t.N))
	if t.W < 1<<tileHeight {
		p += fmt.Sprintf(".p/%d", t.W)
	}
	return p
}

type tileReader struct {
	c *client
	// tamper, when set, flips a bit in the middle of the tile whose path it names.
	tamper string

	mu      sync.Mutex
	fetched map[string]bool
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.H != tileHeight || t.L < 0 {
			return nil, fmt.Errorf("unexpected tile request %+v", t)
		}
		path := tilePath(t)
		body, _, err := r.c.get(r.c.logsPath() + "/" + path)
		if err != nil {
			return nil, err
		}
		if len(body) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", path, len(body), t.W*tlog.HashSize)
		}
		if path == r.tamper {
			body = append([]byte(nil), body...)
			body[len(body)/2] ^= 0x80
		}
		r.mu.Lock()
		if r.fetched == nil {
			r.fetched = map[string]bool{}
		}
		r.fetched[path] = true
		r.mu.Unlock()
		out[i] = body
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// ---------------------------------------------------------------------------------------------
// JSON answers of the proof API.

type inclusionAnswer struct {
	Tenant     string   `json:"tenant"`
	Index      int64    `json:"index"`
	Size       int64    `json:"size"`
	LeafHash   string   `json:"leaf_hash"`
	Root       string   `json:"root"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

type consistencyAnswer struct {
	Tenant     string   `json:"tenant"`
	From       int64    `json:"from"`
	To         int64    `json:"to"`
	FromRoot   string   `json:"from_root"`
	ToRoot     string   `json:"to_root"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

// ---------------------------------------------------------------------------------------------

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "interop: %s\n", msg)
	flag.Usage()
	os.Exit(2)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	base := flag.String("base", envOr("TALLY_BASE", ""), "server base URL, e.g. http://127.0.0.1:7700 (env TALLY_BASE)")
	tenant := flag.String("tenant", envOr("TALLY_TENANT", "default"), "tenant (env TALLY_TENANT)")
	token := flag.String("token", envOr("TALLY_TOKEN", ""), "API token with read scope (env TALLY_TOKEN)")
	vkey := flag.String("vkey", envOr("TALLY_VKEY", ""), "the log's note verifier key name+id+key (env TALLY_VKEY)")
	indexList := flag.String("indexes", envOr("TALLY_INDEXES", ""), "comma-separated leaf indexes to prove (default: a sample)")
	flag.Parse()
	if *base == "" || *token == "" || *vkey == "" {
		usage("-base, -token and -vkey are required")
	}

	c := &client{
		base:   strings.TrimSuffix(*base, "/"),
		tenant: *tenant,
		token:  *token,
		http:   &http.Client{Timeout: 30 * time.Second},
	}
	var ck checker
	if err := run(c, *vkey, *indexList, &ck); err != nil {
		ck.fail("%v", err)
	}
	if len(ck.failures) > 0 {
		fmt.Printf("\nGo x/mod interop: %d checks passed, %d FAILED:\n", ck.passed, len(ck.failures))
		for _, f := range ck.failures {
			fmt.Printf("  - %s\n", f)
		}
		os.Exit(1)
	}
	fmt.Printf("Go x/mod interop: all %d checks passed\n", ck.passed)
}

// run performs every check; it returns an error only when going on makes no sense.
func run(c *client, vkey, indexList string, ck *checker) error {
	// --- The signed checkpoint, verified by note.Open. ---
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return fmt.Errorf("note.NewVerifier(%q): %v", vkey, err)
	}
	verifiers := note.VerifierList(verifier)
	msg, _, err := c.get(c.logsPath() + "/checkpoint")
	if err != nil {
		return err
	}
	cp, n, err := openCheckpoint(msg, verifiers)
	if err != nil {
		return fmt.Errorf("checkpoint from %s/checkpoint does not verify with note.Open: %v\n%s", c.logsPath(), err, msg)
	}
	ck.ok("note.Open verified the checkpoint signed by %s", n.Sigs[0].Name)
	if !strings.HasSuffix(cp.origin, "/"+c.tenant) {
		ck.fail("checkpoint origin %q does not end with /%s", cp.origin, c.tenant)
	}
	if cp.size < 2 {
		return fmt.Errorf("checkpoint size %d is too small for this test (need at least 2 leaves)", cp.size)
	}
	size, root := cp.size, cp.root
	fmt.Printf("checkpoint: origin %s, size %d, root %s\n", cp.origin, size, root)

	// The same checkpoint through the JSON API's route.
	if msg2, _, err := c.get("/v1/checkpoint?" + c.q()); ck.check(err, "GET /v1/checkpoint") {
		cp2, _, err := openCheckpoint(msg2, verifiers)
		if ck.check(err, "note.Open on /v1/checkpoint") && cp2.size >= size {
			if cp2.size == size && cp2.root != root {
				ck.fail("/v1/checkpoint has size %d like the tiles checkpoint but root %s != %s", size, cp2.root, root)
			}
		}
	}

	// --- Tamper evidence of notes: every one of these must be rejected. ---
	checkNoteTampering(msg, verifiers, vkey, ck)

	// --- Tiles, authenticated by Go's TileHashReader against the signed root. ---
	// Our C2SP paths are Go's tile paths without the height segment.
	for _, t := range []tlog.Tile{{H: 8, L: 0, N: 0, W: 256}, {H: 8, L: 1, N: 999, W: 3}, {H: 8, L: 2, N: 1000, W: 256}, {H: 8, L: 0, N: 1234067, W: 8}} {
		if got, want := tilePath(t), "tile/"+strings.TrimPrefix(t.Path(), "tile/8/"); got != want {
			ck.fail("tile path of %+v: %s, but Go's Tile.Path gives %s", t, got, want)
		}
	}
	reader := &tileReader{c: c}
	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, reader)
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		return fmt.Errorf("tlog.TreeHash(%d) over the server's tiles: %v", size, err)
	}
	if th != root {
		return fmt.Errorf("tlog.TreeHash(%d) over the tiles = %s, signed root = %s", size, th, root)
	}
	ck.ok("tlog.TreeHash(%d) over the tiles equals the signed root", size)

	// Every record, from the C2SP entry bundles, hashed into a tree by Go's tlog.StoredHashes:
	// its root must be the signed root. This authenticates all records and leaf hashes.
	records, err := readEntryBundles(c, size)
	if err != nil {
		return err
	}
	ck.ok("read %d records from the entry bundles", len(records))
	mem, err := buildTree(records)
	if err != nil {
		return fmt.Errorf("tlog.StoredHashes over the entry bundles: %v", err)
	}
	if memRoot, err := tlog.TreeHash(size, mem); err != nil || memRoot != root {
		return fmt.Errorf("tlog.TreeHash(%d) over the records in the entry bundles = %s (err %v), signed root = %s", size, memRoot, err, root)
	}
	ck.ok("tlog.TreeHash over all %d records of the entry bundles equals the signed root", size)
	leafHashes := make([]tlog.Hash, size)
	for i := range leafHashes {
		leafHashes[i] = mem[tlog.StoredHashIndex(0, int64(i))]
	}

	// Every tile Go would publish for this tree (tlog.NewTiles: full tiles and every width of
	// the partial ones at the right edge) must be byte-identical to tlog.ReadTileData.
	checkAllTiles(c, size, mem, ck)

	// Tiles altered in transit must be caught.
	checkTileTampering(c, size, root, leafHashes, ck)

	// Historic roots, computed by Go from the records (authenticated above by the signed root);
	// the same computed over the served tiles must agree.
	rootAt := func(n int64) (tlog.Hash, error) {
		want, err := tlog.TreeHash(n, mem)
		if err != nil {
			return want, err
		}
		got, err := tlog.TreeHash(n, hr)
		if err != nil {
			return want, fmt.Errorf("over the tiles: %v", err)
		}
		if got != want {
			return want, fmt.Errorf("over the tiles %s, over the records %s", got, want)
		}
		return want, nil
	}

	// --- Inclusion proofs. ---
	indexes, err := chooseIndexes(indexList, size)
	if err != nil {
		return err
	}
	for _, i := range indexes {
		checkInclusion(c, i, size, root, true, hr, leafHashes, verifiers, ck)
	}
	// Against older tree sizes too (roots recomputed by Go from the records and the tiles).
	for _, pair := range [][2]int64{{0, 1}, {0, 2}, {1, 2}, {5, 7}, {255, 256}, {256, 257}, {300, 512}, {0, size - 1}} {
		i, s := pair[0], pair[1]
		if s > size || i >= s {
			continue
		}
		r, err := rootAt(s)
		if !ck.check(err, "tlog.TreeHash(%d) over records and tiles", s) {
			continue
		}
		checkInclusion(c, i, s, r, false, hr, leafHashes, verifiers, ck)
	}
	checkProofTampering(c, size, root, leafHashes, ck)

	// --- Consistency proofs. ---
	var pairs [][2]int64
	for _, p := range [][2]int64{
		{1, size}, {2, size}, {size / 2, size}, {size - 1, size}, {size, size},
		{255, size}, {256, size}, {257, size}, {511, size}, {512, size},
		{1, 2}, {3, 7}, {255, 256}, {256, 512}, {100, 300}, {size / 3, 2 * size / 3},
	} {
		if p[0] >= 1 && p[0] <= p[1] && p[1] <= size {
			pairs = append(pairs, p)
		}
	}
	for _, p := range pairs {
		checkConsistency(c, p[0], p[1], size, root, rootAt, hr, verifiers, ck)
	}

	fmt.Printf("tiles read through tlog.TileHashReader: %s\n", strings.Join(sortedKeys(reader.fetched), " "))
	fmt.Printf("inclusion proofs checked at size %d for indexes %v; consistency pairs %v\n", size, indexes, pairs)
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := keys(m)
	sort.Strings(out)
	return out
}

func chooseIndexes(list string, size int64) ([]int64, error) {
	var out []int64
	seen := map[int64]bool{}
	add := func(i int64) {
		if i >= 0 && i < size && !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	if strings.TrimSpace(list) != "" {
		for _, f := range strings.Split(list, ",") {
			i, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || i < 0 || i >= size {
				return nil, fmt.Errorf("index %q is not a leaf index of the tree of size %d", f, size)
			}
			add(i)
		}
		return out, nil
	}
	for _, i := range []int64{0, 1, 2, size / 3, size / 2, 255, 256, 257, 511, 512, 513, size - 2, size - 1} {
		add(i)
	}
	return out, nil
}

// memTree is a complete in-memory tree: stored hashes in tlog's storage order.
type memTree []tlog.Hash

func (m memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("stored hash %d is not in the tree", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// buildTree hashes the records into a tree with tlog.StoredHashes.
func buildTree(records [][]byte) (memTree, error) {
	var m memTree
	for i, r := range records {
		hashes, err := tlog.StoredHashes(int64(i), r, m)
		if err != nil {
			return nil, err
		}
		m = append(m, hashes...)
	}
	return m, nil
}

// readEntryBundles fetches every entry bundle (tile/entries/N[.p/W]) of the tree and splits it
// into records (each a big-endian uint16 length and the bytes).
func readEntryBundles(c *client, size int64) ([][]byte, error) {
	records := make([][]byte, 0, size)
	for start := int64(0); start < size; start += 1 << tileHeight {
		w := size - start
		if w > 1<<tileHeight {
			w = 1 << tileHeight
		}
		path := "tile/entries/" + encodeIndex(start>>tileHeight)
		if w < 1<<tileHeight {
			path += fmt.Sprintf(".p/%d", w)
		}
		body, _, err := c.get(c.logsPath() + "/" + path)
		if err != nil {
			return nil, err
		}
		n := 0
		for off := 0; off < len(body); n++ {
			if off+2 > len(body) {
				return nil, fmt.Errorf("%s: truncated length prefix at byte %d", path, off)
			}
			l := int(binary.BigEndian.Uint16(body[off:]))
			if off+2+l > len(body) {
				return nil, fmt.Errorf("%s: truncated entry at byte %d", path, off)
			}
			records = append(records, body[off+2:off+2+l])
			off += 2 + l
		}
		if int64(n) != w {
			return nil, fmt.Errorf("%s: %d entries, want %d", path, n, w)
		}
	}
	return records, nil
}

// checkAllTiles compares every served hash tile with the one Go computes from the records.
func checkAllTiles(c *client, size int64, mem memTree, ck *checker) {
	tiles := tlog.NewTiles(tileHeight, 0, size)
	bad, full, partial, levels := 0, 0, 0, map[int]bool{}
	for _, t := range tiles {
		want, err := tlog.ReadTileData(t, mem)
		if err != nil {
			ck.fail("tlog.ReadTileData(%s): %v", tilePath(t), err)
			bad++
			continue
		}
		path := tilePath(t)
		got, _, err := c.get(c.logsPath() + "/" + path)
		if err != nil {
			ck.fail("%v", err)
			bad++
			continue
		}
		if !bytes.Equal(got, want) {
			ck.fail("%s: served %d bytes that differ from tlog.ReadTileData's %d bytes", path, len(got), len(want))
			bad++
			continue
		}
		levels[t.L] = true
		if t.W == 1<<tileHeight {
			full++
		} else {
			partial++
		}
	}
	if bad == 0 {
		ck.ok("all %d tiles of tlog.NewTiles(8, 0, %d) match tlog.ReadTileData (%d full, %d partial, %d levels)", len(tiles), size, full, partial, len(levels))
	}
	fmt.Printf("tiles compared with tlog.ReadTileData: %d (%d full, %d partial widths, levels 0..%d)\n", len(tiles), full, partial, len(levels)-1)
}

// checkInclusion checks the server's inclusion proof of leaf i in the tree of size s and root r.
func checkInclusion(c *client, i, s int64, r tlog.Hash, latest bool, hr tlog.HashReader, leafHashes []tlog.Hash, verifiers note.Verifiers, ck *checker) {
	var ans inclusionAnswer
	path := fmt.Sprintf("/v1/proof/inclusion?%s&index=%d&size=%d", c.q(), i, s)
	if !ck.check(c.getJSON(path, &ans), "GET %s", path) {
		return
	}
	if ans.Index != i || ans.Size != s || ans.Tenant != c.tenant {
		ck.fail("%s answered tenant=%q index=%d size=%d", path, ans.Tenant, ans.Index, ans.Size)
	}
	leaf, err := decodeHash(ans.LeafHash)
	if !ck.check(err, "leaf_hash of %s", path) {
		return
	}
	proof, err := decodeHashes(ans.Proof)
	if !ck.check(err, "proof of %s", path) {
		return
	}
	if ansRoot, err := decodeHash(ans.Root); err != nil || ansRoot != r {
		ck.fail("%s: root %q, want %s (err %v)", path, ans.Root, r, err)
	}
	ck.check(tlog.CheckRecord(proof, s, r, i, leaf), "tlog.CheckRecord(index %d, size %d) of the server's proof", i, s)
	if leaf != leafHashes[i] {
		ck.fail("%s: leaf_hash %s differs from the tiles' %s", path, leaf, leafHashes[i])
	}

	// Go's own proof, from the authenticated tiles, must verify and equal the server's.
	goProof, err := tlog.ProveRecord(s, i, hr)
	if ck.check(err, "tlog.ProveRecord(%d, %d) from tiles", s, i) {
		ck.check(tlog.CheckRecord(goProof, s, r, i, leaf), "tlog.CheckRecord of Go's own proof (index %d, size %d)", i, s)
		if !equalHashes(goProof, proof) {
			ck.fail("index %d size %d: server's proof %v differs from tlog.ProveRecord's %v", i, s, proof, goProof)
		}
	}

	// The record bytes hash to the leaf.
	evPath := fmt.Sprintf("/v1/events/%d?form=leaf&%s", i, c.q())
	record, hdr, err := c.get(evPath)
	if ck.check(err, "GET %s", evPath) {
		if got := tlog.RecordHash(record); got != leaf {
			ck.fail("tlog.RecordHash(GET %s) = %s, leaf_hash = %s", evPath, got, leaf)
		} else {
			ck.ok("tlog.RecordHash of record %d equals its leaf hash", i)
		}
		if h := hdr.Get("Tally-Leaf-Hash"); h != "" && h != ans.LeafHash {
			ck.fail("GET %s: Tally-Leaf-Hash %s, proof's leaf_hash %s", evPath, h, ans.LeafHash)
		}
	}

	if latest {
		if ans.Checkpoint == "" {
			ck.fail("%s: no checkpoint attached although size %d is the latest checkpoint's", path, s)
		} else if cp, _, err := openCheckpoint([]byte(ans.Checkpoint), verifiers); ck.check(err, "note.Open on the checkpoint attached to %s", path) {
			if cp.size != s || cp.root != r {
				ck.fail("%s: attached checkpoint is size %d root %s, want %d %s", path, cp.size, cp.root, s, r)
			}
		}
	}
}

// checkConsistency checks the server's consistency proof between sizes a <= b.
func checkConsistency(c *client, a, b, size int64, root tlog.Hash, rootAt func(int64) (tlog.Hash, error), hr tlog.HashReader, verifiers note.Verifiers, ck *checker) {
	var ans consistencyAnswer
	path := fmt.Sprintf("/v1/proof/consistency?%s&from=%d&to=%d", c.q(), a, b)
	if !ck.check(c.getJSON(path, &ans), "GET %s", path) {
		return
	}
	if ans.From != a || ans.To != b || ans.Tenant != c.tenant {
		ck.fail("%s answered tenant=%q from=%d to=%d", path, ans.Tenant, ans.From, ans.To)
	}
	fromRoot, err1 := decodeHash(ans.FromRoot)
	toRoot, err2 := decodeHash(ans.ToRoot)
	proof, err3 := decodeHashes(ans.Proof)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			ck.fail("%s: %v", path, err)
			return
		}
	}
	ck.check(tlog.CheckTree(proof, b, toRoot, a, fromRoot), "tlog.CheckTree(%d -> %d) of the server's proof", a, b)

	// Both roots must be the ones Go computes from the tiles authenticated by the signed root.
	wantFrom, err := rootAt(a)
	if ck.check(err, "tlog.TreeHash(%d) over records and tiles", a) && wantFrom != fromRoot {
		ck.fail("%s: from_root %s, but tlog.TreeHash(%d) over the tiles is %s", path, fromRoot, a, wantFrom)
	}
	wantTo, err := rootAt(b)
	if ck.check(err, "tlog.TreeHash(%d) over records and tiles", b) && wantTo != toRoot {
		ck.fail("%s: to_root %s, but tlog.TreeHash(%d) over the tiles is %s", path, toRoot, b, wantTo)
	}
	if b == size && toRoot != root {
		ck.fail("%s: to_root %s differs from the signed root %s", path, toRoot, root)
	}
	if b == size {
		if ans.Checkpoint == "" {
			ck.fail("%s: no checkpoint attached although to=%d is the latest checkpoint's", path, b)
		} else if cp, _, err := openCheckpoint([]byte(ans.Checkpoint), verifiers); ck.check(err, "note.Open on the checkpoint attached to %s", path) && (cp.size != b || cp.root != toRoot) {
			ck.fail("%s: attached checkpoint is size %d root %s, want %d %s", path, cp.size, cp.root, b, toRoot)
		}
	}

	// Go's own consistency proof from the tiles must verify and equal the server's.
	goProof, err := tlog.ProveTree(b, a, hr)
	if ck.check(err, "tlog.ProveTree(%d, %d) from tiles", b, a) {
		ck.check(tlog.CheckTree(goProof, b, wantTo, a, wantFrom), "tlog.CheckTree of Go's own proof (%d -> %d)", a, b)
		if !equalHashes(goProof, proof) {
			ck.fail("%d -> %d: server's proof %v differs from tlog.ProveTree's %v", a, b, proof, goProof)
		}
	}

	// A tampered consistency proof must be rejected.
	if len(proof) > 0 {
		bad := append([]tlog.Hash(nil), proof...)
		bad[len(bad)-1][0] ^= 0x80
		ck.mustReject(tlog.CheckTree(bad, b, toRoot, a, fromRoot), "consistency proof %d -> %d with one bit flipped", a, b)
	}
	if a < b {
		other := fromRoot
		other[31] ^= 0x01
		ck.mustReject(tlog.CheckTree(proof, b, toRoot, a, other), "consistency proof %d -> %d against a wrong from_root", a, b)
	}
}

func equalHashes(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkNoteTampering alters the signed checkpoint in several ways; note.Open must refuse each.
func checkNoteTampering(msg []byte, verifiers note.Verifiers, vkey string, ck *checker) {
	sep := bytes.Index(msg, []byte("\n\n"))
	if sep < 0 {
		ck.fail("checkpoint note has no blank line before its signatures")
		return
	}
	body := msg[:sep+1]
	lines := bytes.SplitN(body, []byte("\n"), 4)

	// One byte of the body changed: the last digit of the tree size.
	t1 := append([]byte(nil), msg...)
	sizeEnd := len(lines[0]) + 1 + len(lines[1]) - 1
	if t1[sizeEnd] == '9' {
		t1[sizeEnd] = '8'
	} else {
		t1[sizeEnd]++
	}
	_, err := note.Open(t1, verifiers)
	ck.mustReject(err, "note with one byte of the tree size changed")

	// One byte of the root hash changed (still valid base64).
	t2 := append([]byte(nil), msg...)
	rootPos := len(lines[0]) + 1 + len(lines[1]) + 1
	if t2[rootPos] == 'A' {
		t2[rootPos] = 'B'
	} else {
		t2[rootPos] = 'A'
	}
	_, err = note.Open(t2, verifiers)
	ck.mustReject(err, "note with one byte of the root hash changed")

	// One byte of the origin changed.
	t3 := append([]byte(nil), msg...)
	t3[0] ^= 0x20
	_, err = note.Open(t3, verifiers)
	ck.mustReject(err, "note with one byte of the origin changed")

	// The signature itself altered (one bit of the Ed25519 signature).
	sigs := msg[sep+2:]
	nl := bytes.IndexByte(sigs, '\n')
	sp := -1
	if nl > 0 {
		sp = bytes.LastIndexByte(sigs[:nl], ' ')
	}
	var raw []byte
	err = errors.New("no signature line")
	if sp >= 0 {
		raw, err = base64.StdEncoding.DecodeString(string(sigs[sp+1 : nl]))
	}
	if err != nil || len(raw) != 4+64 {
		ck.fail("cannot decode the checkpoint's first signature line %q", sigs)
	} else {
		raw[10] ^= 0x01
		t4 := append([]byte(nil), msg[:sep+2+sp+1]...)
		t4 = append(t4, base64.StdEncoding.EncodeToString(raw)...)
		t4 = append(t4, sigs[nl:]...)
		_, err = note.Open(t4, verifiers)
		ck.mustReject(err, "note with one bit of its signature flipped")
	}

	// A different key with the same name must not verify it.
	name := strings.SplitN(vkey, "+", 2)[0]
	_, otherV, err := note.GenerateKey(nil, name)
	if ck.check(err, "note.GenerateKey") {
		v, err := note.NewVerifier(otherV)
		if ck.check(err, "note.NewVerifier(other key)") {
			_, err = note.Open(msg, note.VerifierList(v))
			ck.mustReject(err, "checkpoint checked against another key of the same name")
		}
	}
}

// checkTileTampering flips a bit in served tiles. Go must refuse a tree hash computed from an
// altered right-edge tile, and a record proof built from an altered full tile must not verify.
//
// (Go's TileHashReader alone does not catch every altered full tile: in x/mod's
// tileHashReader.ReadHashes the loop "Authenticate full tiles against their parents" starts
// at len(stx) rather than at the number of distinct tree-hash tiles, so when the tree hash
// needs fewer tiles than subtrees (e.g. size 700: 6 subtrees in 2 tiles) the first index tiles
// are returned unchecked. Hence checkAllTiles compares every tile with ReadTileData, and every
// proof Go builds from tiles is re-checked with CheckRecord/CheckTree.)
func checkTileTampering(c *client, size int64, root tlog.Hash, leafHashes []tlog.Hash, ck *checker) {
	// The right-edge tiles are the ones TreeHash reads; each is authenticated by the root.
	edge := map[string]bool{}
	for l := 0; size>>(uint(l)*tileHeight) > 0; l++ {
		n := size >> (uint(l) * tileHeight)
		if w := n % (1 << tileHeight); w != 0 {
			edge[tilePath(tlog.Tile{H: tileHeight, L: l, N: n >> tileHeight, W: int(w)})] = true
		}
	}
	for path := range edge {
		hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, &tileReader{c: c, tamper: path})
		_, err := tlog.TreeHash(size, hr)
		ck.mustReject(err, "tlog.TreeHash with %s altered in transit", path)
	}
	// A full tile altered in transit (the tamperer flips the first bit of leaf 128's hash):
	// the proof Go builds from it for leaf 0 must fail CheckRecord.
	if size > 1<<tileHeight {
		path := tilePath(tlog.Tile{H: tileHeight, L: 0, N: 0, W: 1 << tileHeight})
		hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, &tileReader{c: c, tamper: path})
		p, err := tlog.ProveRecord(size, 0, hr)
		if err == nil {
			err = tlog.CheckRecord(p, size, root, 0, leafHashes[0])
		}
		ck.mustReject(err, "record proof for leaf 0 built by Go from %s altered in transit", path)
	}
	// And genuine tiles checked against a wrong root.
	bad := root
	bad[0] ^= 0x01
	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: bad}, &tileReader{c: c})
	_, err := tlog.TreeHash(size, hr)
	ck.mustReject(err, "tiles authenticated against a wrong root")
}

// checkProofTampering alters inclusion proofs; tlog.CheckRecord must refuse each.
func checkProofTampering(c *client, size int64, root tlog.Hash, leafHashes []tlog.Hash, ck *checker) {
	i := size / 2
	var ans inclusionAnswer
	path := fmt.Sprintf("/v1/proof/inclusion?%s&index=%d&size=%d", c.q(), i, size)
	if !ck.check(c.getJSON(path, &ans), "GET %s", path) {
		return
	}
	proof, err := decodeHashes(ans.Proof)
	if !ck.check(err, "proof of %s", path) || len(proof) == 0 {
		return
	}
	leaf := leafHashes[i]
	if !ck.check(tlog.CheckRecord(proof, size, root, i, leaf), "untampered proof for index %d", i) {
		return
	}
	for k := range proof {
		bad := append([]tlog.Hash(nil), proof...)
		bad[k][k%tlog.HashSize] ^= 0x04
		ck.mustReject(tlog.CheckRecord(bad, size, root, i, leaf), "inclusion proof of %d with hash %d altered", i, k)
	}
	ck.mustReject(tlog.CheckRecord(proof[:len(proof)-1], size, root, i, leaf), "inclusion proof of %d with its last hash dropped", i)
	j := (i + 1) % size
	ck.mustReject(tlog.CheckRecord(proof, size, root, j, leaf), "inclusion proof of %d presented for index %d", i, j)
	ck.mustReject(tlog.CheckRecord(proof, size, root, i, leafHashes[j]), "inclusion proof of %d with the hash of leaf %d", i, j)
	badRoot := root
	badRoot[7] ^= 0x10
	ck.mustReject(tlog.CheckRecord(proof, size, badRoot, i, leaf), "inclusion proof of %d against a wrong root", i)
}
