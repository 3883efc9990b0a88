package apppkg

import (
	"os"
	"strings"
	"testing"
)

func TestSampleManifestIsValid(t *testing.T) {
	data, err := os.ReadFile("../apps/notes/erg.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.Role(m.OwnerRole); !ok || len(r.Permissions) == 0 {
		t.Errorf("owner role %q: %+v", m.OwnerRole, r)
	}
}

func TestManifestErrorsNameTheField(t *testing.T) {
	valid := `{"id":"a","name":"A","version":1,"command":["/bin/a"],"port":80,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`
	if _, err := ParseManifest([]byte(valid)); err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
	full := strings.Replace(valid, `"port":80`, `"port":80,"icon":"share/icon.png","description":"d",
		"limits":{"memoryMB":64,"pids":10,"cpuPercent":50},"include":["/usr/bin/python3"],"apiPath":"/dav/"`, 1)
	if _, err := ParseManifest([]byte(full)); err != nil {
		t.Fatalf("full manifest refused: %v", err)
	}
	tests := []struct {
		name, json, want string
	}{
		{"not json", `{`, "manifest"},
		{"unknown field", strings.Replace(valid, `"port":80`, `"port":80,"prot":1`, 1), `"prot"`},
		{"trailing data", valid + `{}`, "trailing"},
		{"bad id", strings.Replace(valid, `"id":"a"`, `"id":"../a"`, 1), `"id"`},
		{"no name", strings.Replace(valid, `"name":"A"`, `"name":" "`, 1), `"name"`},
		{"zero version", strings.Replace(valid, `"version":1`, `"version":0`, 1), `"version"`},
		{"relative command", strings.Replace(valid, `"/bin/a"`, `"bin/a"`, 1), `"command"`},
		{"port too big", strings.Replace(valid, `"port":80`, `"port":70000`, 1), `"port"`},
		{"no roles", strings.Replace(valid, `[{"name":"viewer","permissions":["read"]}]`, `[]`, 1), `"roles"`},
		{"bad role name", strings.Replace(valid, `"name":"viewer"`, `"name":"View er"`, 1), `"roles[0].name"`},
		{"bad permission", strings.Replace(valid, `["read"]`, `["Read!"]`, 1), `"roles[0].permissions[0]"`},
		{"owner role missing", strings.Replace(valid, `"ownerRole":"viewer"`, `"ownerRole":"editor"`, 1), `"ownerRole"`},
		{"negative memory", strings.Replace(valid, `"port":80`, `"port":80,"limits":{"memoryMB":-1}`, 1), `"limits.memoryMB"`},
		{"negative cpu", strings.Replace(valid, `"port":80`, `"port":80,"limits":{"cpuPercent":-1}`, 1), `"limits.cpuPercent"`},
		{"cpu past any machine", strings.Replace(valid, `"port":80`, `"port":80,"limits":{"cpuPercent":1000000}`, 1), `"limits.cpuPercent"`},
		{"wrong type", strings.Replace(valid, `"version":1`, `"version":"1"`, 1), "version"},
		{"disk past any machine", strings.Replace(valid, `"port":80`, `"port":80,"limits":{"diskMB":-1}`, 1), `"limits.diskMB"`},
		{"unknown limit", strings.Replace(valid, `"port":80`, `"port":80,"limits":{"cpu":1}`, 1), `"cpu"`},
		{"icon outside", strings.Replace(valid, `"port":80`, `"port":80,"icon":"../icon.png"`, 1), `"icon"`},
		{"icon absolute", strings.Replace(valid, `"port":80`, `"port":80,"icon":"/icon.png"`, 1), `"icon"`},
		{"icon unclean", strings.Replace(valid, `"port":80`, `"port":80,"icon":"a//icon.png"`, 1), `"icon"`},
		{"long description", strings.Replace(valid, `"port":80`, `"port":80,"description":"`+strings.Repeat("x", 5000)+`"`, 1), `"description"`},
		{"relative include", strings.Replace(valid, `"port":80`, `"port":80,"include":["/usr/lib","lib"]`, 1), `"include[1]"`},
		{"unclean include", strings.Replace(valid, `"port":80`, `"port":80,"include":["/usr/../etc"]`, 1), `"include[0]"`},
		{"root include", strings.Replace(valid, `"port":80`, `"port":80,"include":["/"]`, 1), `"include[0]"`},
		{"api path relative", strings.Replace(valid, `"port":80`, `"port":80,"apiPath":"dav/"`, 1), `"apiPath"`},
		{"api path without slash", strings.Replace(valid, `"port":80`, `"port":80,"apiPath":"/dav"`, 1), `"apiPath"`},
		{"api path escapes", strings.Replace(valid, `"port":80`, `"port":80,"apiPath":"/a/../b/"`, 1), `"apiPath"`},
		{"api path query", strings.Replace(valid, `"port":80`, `"port":80,"apiPath":"/a?x=/"`, 1), `"apiPath"`},
		{"api path encoded", strings.Replace(valid, `"port":80`, `"port":80,"apiPath":"/%2e%2e/"`, 1), `"apiPath"`},
		{"bad offer", strings.Replace(valid, `"port":80`, `"port":80,"apiPath":"/","offers":["Files!"]`, 1), `"offers[0]"`},
		{"offer without api", strings.Replace(valid, `"port":80`, `"port":80,"offers":["erg.files/v1"]`, 1), `"offers"`},
		{"missing fields", `{"id":"a"}`, `"name"`},
		{"null", `null`, `"id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tt.json))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestRolesWithin(t *testing.T) {
	m := Manifest{Roles: []Role{
		{Name: "viewer", Permissions: []string{"read"}},
		{Name: "commenter", Permissions: []string{"read", "comment"}},
		{Name: "editor", Permissions: []string{"read", "write"}},
		{Name: "owner", Permissions: []string{"read", "write", "comment", "admin"}},
	}}
	names := func(rs []Role) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	for role, want := range map[string]string{
		"viewer": "viewer", "commenter": "viewer,commenter", "editor": "viewer,editor",
		"owner": "viewer,commenter,editor,owner", "nobody": "",
	} {
		if got := names(m.RolesWithin(role)); got != want {
			t.Errorf("within %s: %q, want %q", role, got, want)
		}
	}
}
