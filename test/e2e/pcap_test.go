package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// tcpSegment is one TCP payload of a capture.
type tcpSegment struct {
	srcPort, dstPort uint16
	payload          []byte
}

// readPcap returns the TCP payloads of an Ethernet/IPv4 capture file (libpcap format, as
// tcpdump -w writes it).
func readPcap(path string) ([]tcpSegment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap %s: short file", path)
	}
	var order binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap %s: not a pcap file", path)
	}
	var out []tcpSegment
	for off := 24; off+16 <= len(b); {
		incl := int(order.Uint32(b[off+8:]))
		off += 16
		if off+incl > len(b) {
			break
		}
		pkt := b[off : off+incl]
		off += incl
		if len(pkt) < 14+20 || binary.BigEndian.Uint16(pkt[12:]) != 0x0800 {
			continue // not IPv4
		}
		ip := pkt[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 6 || len(ip) < ihl+20 {
			continue // not TCP
		}
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if total > len(ip) {
			total = len(ip)
		}
		tcp := ip[ihl:total]
		doff := int(tcp[12]>>4) * 4
		if len(tcp) < doff {
			continue
		}
		if payload := tcp[doff:]; len(payload) > 0 {
			out = append(out, tcpSegment{
				srcPort: binary.BigEndian.Uint16(tcp[0:]), dstPort: binary.BigEndian.Uint16(tcp[2:]),
				payload: bytes.Clone(payload),
			})
		}
	}
	return out, nil
}
