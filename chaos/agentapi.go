package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// getJSON decodes GET api+path into v.
func getJSON(ctx context.Context, api, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reading the agent's %s: %w", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decoding the agent's %s: %w", path, err)
	}
	return nil
}

// AgentWebhook is a webhook as the agent's /webhooks lists it.
type AgentWebhook struct {
	Ref struct {
		Kind          string `json:"kind"`
		Configuration string `json:"configuration"`
		Name          string `json:"name"`
	} `json:"ref"`
	Invalid  string   `json:"invalid"`
	Problem  string   `json:"problem"`
	Traced   []string `json:"traced"`
	Untraced []string `json:"untraced"`
}

// Webhooks lists the webhooks the agents know (each agent's, together).
func (p *AgentProcess) Webhooks(ctx context.Context) ([]AgentWebhook, error) {
	var all []AgentWebhook
	err := p.each(func(api string) error {
		var ws []AgentWebhook
		if err := getJSON(ctx, api, "/webhooks", &ws); err != nil {
			return err
		}
		all = append(all, ws...)
		return nil
	})
	return all, err
}

// AgentRisk is a risk as the agent's /risks lists it.
type AgentRisk struct {
	Webhook struct {
		Configuration string `json:"configuration"`
		Name          string `json:"name"`
	} `json:"webhook"`
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Detail   string `json:"detail"`
}

// Risks lists the risks the Lease holder found.
func (p *AgentProcess) Risks(ctx context.Context) ([]AgentRisk, error) {
	var all []AgentRisk
	err := p.each(func(api string) error {
		var rs []AgentRisk
		if err := getJSON(ctx, api, "/risks", &rs); err != nil {
			return err
		}
		all = append(all, rs...)
		return nil
	})
	return all, err
}

// Usage is what the agent process has cost: CPU time (user and system)
// and its resident memory now and at its peak.
type Usage struct {
	CPU      time.Duration
	RSS, HWM int64 // bytes
	// Anon is the resident memory that is not the binary's or a file's
	// pages (RssAnon): the heap and stacks, what a workload can grow.
	Anon int64
}

// Usage reads the agent process's CPU time and memory from /proc.
func (p *AgentProcess) Usage() (Usage, error) {
	if p.cmd == nil || p.cmd.Process == nil {
		return Usage{}, fmt.Errorf("the agent is not a process of this game day")
	}
	pid := p.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("reading the agent's CPU time: %w", err)
	}
	// utime and stime are fields 14 and 15, after the parenthesised name.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if len(fields) < 13 {
		return Usage{}, fmt.Errorf("reading the agent's CPU time: short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	u := Usage{CPU: time.Duration(utime+stime) * time.Second / 100} // USER_HZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("reading the agent's memory: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			u.RSS = kb << 10
		case "VmHWM:":
			u.HWM = kb << 10
		case "RssAnon:":
			u.Anon = kb << 10
		}
	}
	return u, nil
}
