package tcpstate

// The event struct and the enums are defined once, in tcpstate.bpf.c; bpf2go
// generates their Go types. The generated files are committed, so building
// hookscope needs no clang: only `make generate` does.
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror" -target bpfel -type event -type event_kind -type counter -type side -type tcp_state -type conn_flag tcpstate tcpstate.bpf.c -- -I/usr/include/x86_64-linux-gnu
