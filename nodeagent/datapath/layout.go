package datapath

// Go mirrors of the structs and enums in bpf/include/weft.h. Field order, sizes and padding
// follow the C declarations exactly; TestLayout compares them with the BTF of every object.

const (
	maxPodIPs       = 4  // WEFT_MAX_POD_IPS
	maxProbeSources = 2  // WEFT_MAX_PROBE_SOURCES
	maxPorts        = 32 // WEFT_MAX_PORTS
)

// podFlag is enum weft_pod_flag.
type podFlag uint32

const (
	podOutbound podFlag = 1 << 0 // WEFT_POD_OUTBOUND
	podInbound  podFlag = 1 << 1 // WEFT_POD_INBOUND
)

// podConfig is struct pod_config, the value of the enrolled map.
type podConfig struct {
	Flags           podFlag
	NIPs            uint8
	NProbeSources   uint8
	NExcludeOut     uint8
	NExcludeIn      uint8
	IPs             [maxPodIPs][16]byte
	ProbeSources    [maxProbeSources][16]byte
	ExcludeOutPorts [maxPorts]uint16
	ExcludeInPorts  [maxPorts]uint16
}

// origDst is struct orig_dst.
type origDst struct {
	Addr [16]byte
	Port uint16
	Pad  uint16
}

// sockKey is struct sock_key, the key of the orig_dst map.
type sockKey struct {
	NetnsCookie uint64
	Addr        [16]byte
	Port        uint16
	Pad0        uint16
	Pad1        uint32
}

// listenerKey is struct listener_key, the key of the inbound_socks map.
type listenerKey struct {
	NetnsCookie uint64
	Family      uint32
	Pad         uint32
}

// upstreamKey is struct upstream_key, the key of the upstream map.
type upstreamKey struct {
	NetnsCookie uint64
	Client      [16]byte
	Server      [16]byte
	ClientPort  uint16
	ServerPort  uint16
	Pad         uint32
}
