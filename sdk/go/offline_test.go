// Parts of the package that need no tree.
package tenkisandbox

import (
	"encoding/json"
	"testing"
	"time"
)

func TestGuestRel(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"/home/tenki", "", true},
		{"/home/tenki/a/b", "a/b", true},
		{"a/./b//c", "a/b/c", true},
		{"a/../b", "b", true},
		{"/home/tenki/a/../../tenki/x", "", false},
		{"..", "", false},
		{"/tmp/x", "", false},
		{"/home/tenkix", "", false},
	} {
		got, ok := guestRel(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("guestRel(%q) = %q, %v", c.in, got, ok)
		}
	}
}

func TestSpec(t *testing.T) {
	o := collect([]Option{WithName("n"), WithCPUCores(2), WithAllowInbound(false),
		WithEnv("A", "1"), WithMaxDuration(90500 * time.Millisecond), WithSnapshot("snap"),
		WithVolume("v", "/data", ReadOnly()), WithVolume("w", "/w"), WithSSHKeys([]string{"k"})})
	b, _ := json.Marshal(spec(o, true, 2*time.Minute))
	want := `{"allow_inbound":false,"cpu_cores":2,"env":{"A":"1"},"max_duration":"91s","name":"n",` +
		`"snapshot":"snap","ssh_authorized_keys":["k"],"volumes":[{"volume_id":"v","mount_path":"/data",` +
		`"read_only":true},{"volume_id":"w","mount_path":"/w"}],"wait":true,"wait_timeout":"120s"}`
	if string(b) != want {
		t.Fatalf("spec\n got %s\nwant %s", b, want)
	}
	if b, _ := json.Marshal(spec(collect(nil), false, 0)); string(b) != `{"wait":false}` {
		t.Fatalf("empty spec %s", b)
	}
}

func TestStatus(t *testing.T) {
	for _, c := range []struct {
		s                  ExecStatus
		ok, failed, timout bool
	}{
		{"exited 0", true, false, false},
		{"exited 3", false, true, false},
		{"timeout", false, true, true},
		{"killed 9", false, true, false},
		{"running", false, false, false},
	} {
		if c.s.IsSuccess() != c.ok || c.s.IsFailed() != c.failed || c.s.IsTimedOut() != c.timout {
			t.Errorf("%q", c.s)
		}
	}
}
