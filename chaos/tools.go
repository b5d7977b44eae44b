package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ToolsEnv names the environment variable that overrides the directory of
// hookscope's offline toolchain (see tools/build.sh).
const ToolsEnv = "HOOKSCOPE_TOOLS_BIN"

// clusterTools are the binaries a Local cluster runs. kwokctl is given a path
// for every component: a missing one makes it try to download it, which fails
// offline.
var clusterTools = []string{
	"etcd",
	"kube-apiserver",
	"kube-controller-manager",
	"kube-scheduler",
	"kwok",
	"kwokctl",
}

// ToolsDir returns the directory holding the binaries a Local cluster needs:
// $HOOKSCOPE_TOOLS_BIN if set, else ~/.cache/hookscope/bin/current, where
// tools/build.sh links the pinned versions. It fails, naming every missing
// binary, unless each one is there and executable.
func ToolsDir() (string, error) {
	dir := os.Getenv(ToolsEnv)
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding hookscope tools: %w", err)
		}
		dir = filepath.Join(home, ".cache", "hookscope", "bin", "current")
	}
	var missing []string
	for _, tool := range clusterTools {
		fi, err := os.Stat(filepath.Join(dir, tool))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("finding hookscope tools in %s: %s missing or not executable; run `make tools`",
			dir, strings.Join(missing, ", "))
	}
	return dir, nil
}
