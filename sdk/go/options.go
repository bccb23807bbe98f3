package tenkisandbox

import "time"

// Option configures Create/CreateAndWait, Exec/Start and ExposePort; each
// call uses the options that concern it (WithEnvs works for both a
// session's create and an exec).
type Option func(*options)

// Volume is one volume to attach at create.
type Volume struct {
	VolumeID  string `json:"volume_id"`
	MountPath string `json:"mount_path"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// VolumeOption configures WithVolume.
type VolumeOption func(*Volume)

type options struct {
	// create
	name        string
	cpu, mem    int
	inbound     *bool
	outbound    *bool
	maxDuration time.Duration
	metadata    map[string]string
	sshKeys     []string
	volumes     []Volume
	snapshot    string
	template    string
	image       string
	// create and exec
	env map[string]string
	// exec
	args    []string
	timeout time.Duration
	cwd     string
	stdin   []byte
	hasIn   bool
	// ports
	ttl time.Duration
}

func collect(opts []Option) *options {
	o := &options{}
	for _, f := range opts {
		f(o)
	}
	return o
}

func WithName(name string) Option            { return func(o *options) { o.name = name } }
func WithCPUCores(n int) Option              { return func(o *options) { o.cpu = n } }
func WithMemoryMB(n int) Option              { return func(o *options) { o.mem = n } }
func WithMaxDuration(d time.Duration) Option { return func(o *options) { o.maxDuration = d } }
func WithAllowInbound(b bool) Option         { return func(o *options) { o.inbound = &b } }
func WithAllowOutbound(b bool) Option        { return func(o *options) { o.outbound = &b } }
func WithSnapshot(name string) Option        { return func(o *options) { o.snapshot = name } }
func WithTemplate(name string) Option        { return func(o *options) { o.template = name } }
func WithImage(name string) Option           { return func(o *options) { o.image = name } }
func WithSSHKeys(keys []string) Option {
	return func(o *options) { o.sshKeys = append(o.sshKeys, keys...) }
}

// WithMetadata adds opaque key/value pairs to the session.
func WithMetadata(m map[string]string) Option {
	return func(o *options) {
		if o.metadata == nil {
			o.metadata = map[string]string{}
		}
		for k, v := range m {
			o.metadata[k] = v
		}
	}
}

// WithVolume attaches an existing volume at mountPath.
func WithVolume(volumeID, mountPath string, vo ...VolumeOption) Option {
	return func(o *options) {
		v := Volume{VolumeID: volumeID, MountPath: mountPath}
		for _, f := range vo {
			f(&v)
		}
		o.volumes = append(o.volumes, v)
	}
}

// ReadOnly mounts a volume read-only.
func ReadOnly() VolumeOption { return func(v *Volume) { v.ReadOnly = true } }

// WithEnv sets one environment variable (of the session at create, of
// the job at exec).
func WithEnv(key, value string) Option {
	return WithEnvs(map[string]string{key: value})
}

// WithEnvs sets environment variables.
func WithEnvs(m map[string]string) Option {
	return func(o *options) {
		if o.env == nil {
			o.env = map[string]string{}
		}
		for k, v := range m {
			o.env[k] = v
		}
	}
}

// WithArgs gives the program's arguments (no shell is involved).
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithTimeout ends the job after d (its status is then timeout, exit 124).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithCwd runs the job in dir (default /home/tenki).
func WithCwd(dir string) Option { return func(o *options) { o.cwd = dir } }

// WithStdin gives the job's whole standard input.
func WithStdin(data []byte) Option {
	return func(o *options) { o.stdin = data; o.hasIn = true }
}

// WithTTL makes an exposed port expire after d.
func WithTTL(d time.Duration) Option { return func(o *options) { o.ttl = d } }
