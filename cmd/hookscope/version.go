package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// version is the release this binary was built from, stamped at build
// time: go build -ldflags "-X main.version=v0.4.0". Unstamped, it is the
// module's version as go install records it, else "devel".
var version string

// VersionInfo is what `hookscope version` prints.
type VersionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	// Revision is the commit, when the build recorded it (go build's
	// -buildvcs); empty otherwise.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

func versionInfo() VersionInfo {
	v := VersionInfo{Version: versionString(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

// versionString is the stamped version, else the module's, else "devel".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func versionCommand() *cobra.Command {
	var outputFlag string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this hookscope binary",
		Example: `  hookscope version
  hookscope version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo()
			w := cmd.OutOrStdout()
			switch outputFlag {
			case "json":
				b, err := json.MarshalIndent(v, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(w, "%s\n", b)
				return err
			case "yaml":
				b, err := yaml.Marshal(v)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			case "":
				line := fmt.Sprintf("hookscope %s (%s, %s", v.Version, v.GoVersion, v.Platform)
				if v.Revision != "" {
					line += ", commit " + v.Revision
					if v.Modified {
						line += ", modified"
					}
				}
				_, err := fmt.Fprintln(w, line+")")
				return err
			}
			return fmt.Errorf("-o %q: want json or yaml", outputFlag)
		},
	}
	cmd.Flags().StringVarP(&outputFlag, "output", "o", "", "json or yaml (default: one line)")
	return cmd
}
