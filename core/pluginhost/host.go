// Package pluginhost discovers, launches and supervises cairn's plugins on
// one node. New starts every executable in the plugin directory, asks it
// what it serves (Describe) and keeps those that answer; RegisterStorage
// puts the storage plugins' schemes into a cloud.Registry, taking over
// built-in schemes; Matcher and Policy hand out the locality plugins.
//
// Supervision: every store a plugin serves is wrapped so that, when the
// plugin process dies (the call fails on the connection, or go-plugin saw
// the process exit), the host starts the binary again, replays Open for
// every store still open, and retries the call. A read resumes where it
// stopped; a write is replayed from the host's copy of its bytes, kept in
// a spool file (memory stays bounded), into a fresh stream. Close kills
// every plugin the host started.
//
// Every node has its own Host: data never crosses nodes through a plugin.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/cairnbackup/cairn/core/cloud"
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/localityrpc"
	"github.com/cairnbackup/cairn/sdk/plugin"
	"github.com/cairnbackup/cairn/sdk/storage"
	"github.com/cairnbackup/cairn/sdk/storage/storagerpc"
)

// EnvDir names the environment variable that sets the plugin directory
// when --plugin-dir is not given.
const EnvDir = "CAIRN_PLUGIN_DIR"

// Config configures a Host.
type Config struct {
	// Dir holds the plugin binaries; "" means no plugins.
	Dir    string
	Logger *slog.Logger
	// CallTimeout bounds every unary call (Open, Stat, Delete, Close,
	// Describe); streams are bound by their caller's context. 0 means 30s.
	CallTimeout time.Duration
	// SpoolDir holds the host's copies of writes in flight, in a
	// directory of its own (cairn-spool-<pid>-*) removed by Close; ""
	// means os.TempDir(). Storage plugins read finished writes from it,
	// and the local store takes them by a hard link, so on the file
	// system of the destination it saves a copy. Give it room for the
	// files being written at once (a backup: workers x target file size).
	SpoolDir string
	// NoFileHandoff sends every write's and read's bytes over the plugin's
	// socket, even with plugins that can exchange them as files in the
	// spool: for plugins that cannot see SpoolDir (a sandbox). Plugins
	// that cannot open a handed file are switched to streaming by
	// themselves.
	NoFileHandoff bool
	// MaxRestarts is how many times one call restarts a dead plugin
	// before giving up; 0 means 3.
	MaxRestarts int
}

// PluginInfo describes one running plugin.
type PluginInfo struct {
	Path string
	Info plugin.Info
	// Protocol is the protocol version negotiated with the binary.
	Protocol int
	// PID is the plugin's current process id.
	PID int
	// Restarts counts the restarts after a crash.
	Restarts int
}

// Host runs the plugins of one node. It is safe for concurrent use.
type Host struct {
	cfg      Config
	logger   *slog.Logger
	plugins  []*proc
	spoolDir string // this host's own, under cfg.SpoolDir

	mu     sync.Mutex
	closed bool
}

// New discovers the executables in cfg.Dir, starts each, and keeps those
// that answer Describe; the others are stopped and logged. A Dir that
// does not exist is an error.
func New(ctx context.Context, cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 30 * time.Second
	}
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 3
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	h := &Host{cfg: cfg, logger: cfg.Logger}
	if cfg.Dir == "" {
		return h, nil
	}
	paths, err := Discover(cfg.Dir)
	if err != nil {
		return nil, err
	}
	removeStaleSpools(cfg.SpoolDir, cfg.Logger)
	if h.spoolDir, err = os.MkdirTemp(cfg.SpoolDir, fmt.Sprintf("%s%d-", spoolPrefix, os.Getpid())); err != nil {
		return nil, fmt.Errorf("creating the plugin write spool: %w", err)
	}
	for _, path := range paths {
		if err := ctx.Err(); err != nil {
			h.Close()
			return nil, fmt.Errorf("starting plugins: %w", err)
		}
		p := &proc{h: h, path: path, stores: map[*hostStore]struct{}{}}
		if err := p.start(ctx, true); err != nil {
			h.logger.Warn("skipping plugin", "path", path, "error", err)
			continue
		}
		h.plugins = append(h.plugins, p)
		h.logger.Info("plugin started", "path", path, "name", p.info.Name, "version", p.info.Version,
			"kinds", p.info.Kinds, "schemes", p.info.Schemes)
	}
	return h, nil
}

// Discover lists the plugin binaries in dir: regular, executable files
// whose names do not start with ".", sorted by name.
func Discover(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading plugin directory %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.Name()[0] == '.' {
			continue
		}
		path := filepath.Join(dir, e.Name())
		fi, err := os.Stat(path) // follows symlinks
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading plugin directory %s: %w", dir, err)
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			out = append(out, path)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Plugins describes the running plugins, in the order of their paths.
func (h *Host) Plugins() []PluginInfo {
	out := make([]PluginInfo, 0, len(h.plugins))
	for _, p := range h.plugins {
		out = append(out, p.describe())
	}
	return out
}

// Storage returns the provider of scheme, and false when no plugin
// serves it. Its stores survive plugin crashes.
func (h *Host) Storage(scheme string) (storage.Provider, bool) {
	for _, p := range h.plugins {
		if slices.Contains(p.info.Kinds, plugin.KindStorage) && slices.Contains(p.info.Schemes, scheme) {
			return &provider{p: p}, true
		}
	}
	return nil, false
}

// RegisterStorage makes reg open the schemes of the storage plugins with
// them, overriding the built-in Openers of the same schemes. When two
// plugins serve a scheme, the first by path wins.
func (h *Host) RegisterStorage(reg *cloud.Registry) {
	taken := map[string]string{}
	for _, p := range h.plugins {
		if !slices.Contains(p.info.Kinds, plugin.KindStorage) {
			continue
		}
		for _, scheme := range p.info.Schemes {
			if other, ok := taken[scheme]; ok {
				h.logger.Warn("scheme served by two plugins; keeping the first", "scheme", scheme, "first", other, "second", p.path)
				continue
			}
			taken[scheme] = p.path
			prov := &provider{p: p}
			if reg.Override(scheme, prov.opener) {
				h.logger.Info("plugin takes over a built-in scheme", "scheme", scheme, "plugin", p.path)
			}
		}
	}
}

// Matcher returns the locality matcher of the first plugin serving one.
// Like a store, it survives the plugin's restarts.
func (h *Host) Matcher() (locality.Matcher, bool) {
	for _, p := range h.plugins {
		if m, _, _ := p.localityKinds(); m != nil {
			return hostMatcher{p: p}, true
		}
	}
	return nil, false
}

// Policy returns the named execution policy of the first plugin serving
// it. Like a store, it survives the plugin's restarts.
func (h *Host) Policy(name string) (locality.Policy, bool) {
	for _, p := range h.plugins {
		if _, ps, _ := p.localityKinds(); ps != nil {
			if _, ok := ps.Policy(name); ok {
				return hostPolicy{p: p, name: name}, true
			}
		}
	}
	return nil, false
}

// Close stops every plugin the host started and waits for the processes
// to exit. Stores opened through the host fail afterwards.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range h.plugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
	if h.spoolDir != "" {
		os.RemoveAll(h.spoolDir)
	}
	return nil
}

// spoolPrefix starts the names of hosts' spool directories, followed by
// the owner's process id.
const spoolPrefix = "cairn-spool-"

// removeStaleSpools removes the spool directories in dir left by hosts
// whose process is gone (killed before Close).
func removeStaleSpools(dir string, logger *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), spoolPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() || processExists(pid) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			logger.Warn("removing a dead host's write spool", "path", path, "error", err)
		}
	}
}

// processExists reports whether a process with id pid runs (as far as
// signal 0 can tell).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// errHostClosed is returned by calls on a closed host.
var errHostClosed = fmt.Errorf("plugin host is closed: %w", storage.ErrUnavailable)

// proc is one plugin binary and its current process.
type proc struct {
	h    *Host
	path string
	info plugin.Info // from the first start

	startMu sync.Mutex // serializes restarts

	mu       sync.Mutex
	client   *goplugin.Client
	storage  *storagerpc.Client
	matcher  locality.Matcher     // of the current process
	policies localityrpc.Policies // of the current process
	gen      uint64               // bumped by every (re)start
	restarts int
	stopped  bool
	stores   map[*hostStore]struct{} // open stores, replayed after a restart
	noFiles  map[string]bool         // capabilities refused: stream instead
}

// takesFiles reports whether the plugin is offered files for the
// capability (plugin.CapabilityWriteFile or CapabilityReadFile).
func (p *proc) takesFiles(capability string) bool {
	if p.h.cfg.NoFileHandoff || !slices.Contains(p.info.Capabilities, capability) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.noFiles[capability]
}

// refuseFiles makes later calls of the capability stream: the plugin
// answered with err (it cannot see the spool).
func (p *proc) refuseFiles(capability string, err error) {
	p.mu.Lock()
	first := !p.noFiles[capability]
	if p.noFiles == nil {
		p.noFiles = map[string]bool{}
	}
	p.noFiles[capability] = true
	p.mu.Unlock()
	if first {
		p.h.logger.Warn("plugin cannot exchange files through the spool; streaming", "plugin", p.path, "capability", capability, "error", err)
	}
}

// start launches the binary. The first start describes it and dispenses
// the locality kinds.
func (p *proc) start(ctx context.Context, first bool) error {
	client := goplugin.NewClient(plugin.ClientConfig(p.path, p.h.logger))
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return fmt.Errorf("starting plugin %s: %w", p.path, err)
	}
	if first {
		dctx, cancel := context.WithTimeout(ctx, p.h.cfg.CallTimeout)
		info, err := plugin.Describe(dctx, client)
		cancel()
		if err != nil {
			client.Kill()
			return err
		}
		p.info = info
	}
	// The locality kinds are dispensed from every process: a restart
	// replaces the connections they use.
	var matcher locality.Matcher
	var policies localityrpc.Policies
	if slices.Contains(p.info.Kinds, plugin.KindLocalityMatcher) {
		if m, err := dispense(rpc, localityrpc.MatcherName, localityrpc.MatcherFromDispensed); err != nil {
			p.h.logger.Warn("dispensing the locality matcher", "plugin", p.path, "error", err)
		} else {
			matcher = m
		}
	}
	if slices.Contains(p.info.Kinds, plugin.KindExecutionPolicy) {
		if ps, err := dispense(rpc, localityrpc.PolicyName, localityrpc.PoliciesFromDispensed); err != nil {
			p.h.logger.Warn("dispensing the execution policies", "plugin", p.path, "error", err)
		} else {
			policies = ps
		}
	}
	var sc *storagerpc.Client
	if slices.Contains(p.info.Kinds, plugin.KindStorage) {
		raw, err := rpc.Dispense(plugin.KindStorage)
		if err != nil {
			client.Kill()
			return fmt.Errorf("dispensing storage from %s: %w", p.path, err)
		}
		c, ok := raw.(*storagerpc.Client)
		if !ok {
			client.Kill()
			return fmt.Errorf("dispensing storage from %s: got %T", p.path, raw)
		}
		sc = c.WithSchemes(p.info.Schemes).WithCallTimeout(p.h.cfg.CallTimeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		client.Kill()
		return errHostClosed
	}
	p.client, p.storage = client, sc
	p.matcher, p.policies = matcher, policies
	p.gen++
	return nil
}

func dispense[T any](rpc goplugin.ClientProtocol, name string, conv func(any) (T, error)) (T, error) {
	var zero T
	raw, err := rpc.Dispense(name)
	if err != nil {
		return zero, err
	}
	return conv(raw)
}

func (p *proc) describe() PluginInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	pi := PluginInfo{Path: p.path, Info: p.info, Restarts: p.restarts}
	if p.client != nil {
		pi.Protocol = p.client.NegotiatedVersion()
		if rc := p.client.ReattachConfig(); rc != nil {
			pi.PID = rc.Pid
		}
	}
	return pi
}

// current returns the storage client of the running process and its
// generation.
func (p *proc) current() (*storagerpc.Client, uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, 0, errHostClosed
	}
	if p.storage == nil {
		return nil, 0, fmt.Errorf("plugin %s serves no storage: %w", p.path, storage.ErrUnimplemented)
	}
	return p.storage, p.gen, nil
}

// dead reports whether err, from a call made under ctx, means the
// plugin process is gone (or its connection broken beyond use).
func (p *proc) dead(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if storagerpc.IsConnectionError(err) {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.client != nil && p.client.Exited()
}

// restart replaces the process of generation gen, unless another caller
// already did, then replays Open for every open store.
func (p *proc) restart(ctx context.Context, gen uint64) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return errHostClosed
	}
	if p.gen != gen {
		p.mu.Unlock()
		return nil
	}
	old := p.client
	p.mu.Unlock()
	p.h.logger.Warn("plugin died; restarting", "plugin", p.path, "generation", gen)
	old.Kill()
	// Starts are serialized per plugin: a second caller that saw the same
	// generation waits here and then finds it moved.
	p.startMu.Lock()
	defer p.startMu.Unlock()
	p.mu.Lock()
	moved := p.gen != gen
	p.mu.Unlock()
	if moved {
		return nil
	}
	if err := p.start(ctx, false); err != nil {
		return fmt.Errorf("restarting plugin: %w", err)
	}
	p.mu.Lock()
	p.restarts++
	stores := make([]*hostStore, 0, len(p.stores))
	for s := range p.stores {
		stores = append(stores, s)
	}
	p.mu.Unlock()
	for _, s := range stores {
		if _, _, err := s.get(ctx); err != nil {
			p.h.logger.Warn("replaying Open after a restart", "plugin", p.path, "uri", s.shown, "error", err)
		}
	}
	return nil
}

func (p *proc) stop() {
	p.mu.Lock()
	p.stopped = true
	client := p.client
	p.mu.Unlock()
	if client != nil {
		client.Kill()
	}
}
