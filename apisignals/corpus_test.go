package apisignals

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFuzzCorpus writes the checked-in seed corpora (testdata/fuzz)
// from failureCases (parse_test.go) and metricsSample (metrics_test.go):
// HOOKSCOPE_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus ./apisignals/
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HOOKSCOPE_WRITE_CORPUS") == "" {
		t.Skip("set HOOKSCOPE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target, name, value string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + value + "\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slug := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(s))
	}
	for _, c := range failureCases {
		write("FuzzParseWebhookFailure", slug(c.name), fmt.Sprintf("string(%q)", c.msg))
	}
	write("FuzzParseWebhookMetrics", "apiserver-sample", fmt.Sprintf("[]byte(%q)", metricsSample))
	write("FuzzParseWebhookMetrics", "callouts-v1.34", fmt.Sprintf("[]byte(%q)", callOutSample))
	write("FuzzParseWebhookMetrics", "untyped-fail-open", fmt.Sprintf("[]byte(%q)", "apiserver_admission_webhook_fail_open_count{name=\"a\",type=\"admit\"} 1\n"))
	write("FuzzParseWebhookMetrics", "html", fmt.Sprintf("[]byte(%q)", "<html><body>Forbidden</body></html>\n"))
}
