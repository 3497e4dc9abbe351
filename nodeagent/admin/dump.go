package admin

import (
	"crypto/x509"
	"time"

	"github.com/weftmesh/weft/nodeagent/config"
	"github.com/weftmesh/weft/nodeagent/state"
)

// CertificateSource tells which workload certificates the agent holds. It hands out
// certificates only: private keys never reach the admin server.
type CertificateSource interface {
	// Certificates returns the chains in use, each leaf first.
	Certificates() [][]*x509.Certificate
}

// CertificateFunc adapts a function to a CertificateSource.
type CertificateFunc func() [][]*x509.Certificate

// Certificates implements CertificateSource.
func (f CertificateFunc) Certificates() [][]*x509.Certificate { return f() }

// configDump is the document /config_dump serves.
type configDump struct {
	Config    configStatus     `json:"config"`
	Workloads []workloadDump   `json:"workloads"`
	Services  []*state.Service `json:"services"`
	Policies  []policyDump     `json:"policies"`
	// Authorizations are the AuthorizationPolicies in force, as the controller translated them.
	Authorizations []*state.Authorization `json:"authorizations"`
	Certificates   []certDump             `json:"certificates"`
}

// configStatus is where the configuration stands.
type configStatus struct {
	// Version of the snapshot in force ("" before the first).
	Version string `json:"version"`
	// The rest comes from the source.
	Source          string    `json:"source,omitempty"`
	Applied         time.Time `json:"applied,omitzero"`
	LastError       string    `json:"lastError,omitempty"`
	RejectedVersion string    `json:"rejectedVersion,omitempty"`
	Failed          time.Time `json:"failed,omitzero"`
}

type workloadDump struct {
	*state.Workload
	Identity string `json:"identity"`
}

// policyDump is the effective PeerAuthentication of an enrolled workload, defaults applied.
type policyDump struct {
	Workload      string              `json:"workload"`
	Kind          string              `json:"kind"`
	MTLS          modeDump            `json:"mtls"`
	PortLevelMTLS map[uint16]modeDump `json:"portLevelMtls,omitempty"`
}

type modeDump struct {
	Mode state.Mode `json:"mode"`
}

type certDump struct {
	Identity  string     `json:"identity"`
	State     string     `json:"state"`
	CertChain []certInfo `json:"certChain"`
}

type certInfo struct {
	SerialNumber   string    `json:"serialNumber"`
	Subject        string    `json:"subject,omitempty"`
	Issuer         string    `json:"issuer,omitempty"`
	URIs           []string  `json:"uris,omitempty"`
	ValidFrom      time.Time `json:"validFrom"`
	ExpirationTime time.Time `json:"expirationTime"`
	IsCA           bool      `json:"isCA,omitempty"`
}

func buildDump(snap *state.Snapshot, src config.StatusReporter, certs CertificateSource, now time.Time) *configDump {
	d := &configDump{
		Config:         configStatus{Version: snap.Version()},
		Workloads:      make([]workloadDump, 0, len(snap.Workloads())),
		Services:       snap.Services(),
		Policies:       []policyDump{},
		Authorizations: append([]*state.Authorization{}, snap.Authorizations()...),
		Certificates:   []certDump{},
	}
	if d.Services == nil {
		d.Services = []*state.Service{}
	}
	if src != nil {
		st := src.Status()
		d.Config.Source = st.Source
		d.Config.Applied = st.Applied
		d.Config.RejectedVersion = st.Rejected
		d.Config.Failed = st.Failed
		if st.LastError != nil {
			d.Config.LastError = st.LastError.Error()
		}
	}
	for _, w := range snap.Workloads() {
		d.Workloads = append(d.Workloads, workloadDump{Workload: w, Identity: w.Identity().String()})
		if !w.Enrolled() {
			continue
		}
		// Port 0 is never a port-level key (validation refuses it), so it gives the
		// workload-wide mode.
		p := policyDump{Workload: w.UID, Kind: "PeerAuthentication", MTLS: modeDump{snap.InboundMode(w, 0)}}
		if len(w.PeerAuthentication.PortLevel) > 0 {
			p.PortLevelMTLS = make(map[uint16]modeDump, len(w.PeerAuthentication.PortLevel))
			for port := range w.PeerAuthentication.PortLevel {
				p.PortLevelMTLS[port] = modeDump{snap.InboundMode(w, port)}
			}
		}
		d.Policies = append(d.Policies, p)
	}
	if certs != nil {
		for _, chain := range certs.Certificates() {
			if len(chain) == 0 {
				continue
			}
			d.Certificates = append(d.Certificates, dumpChain(chain, now))
		}
	}
	return d
}

func dumpChain(chain []*x509.Certificate, now time.Time) certDump {
	leaf := chain[0]
	cd := certDump{State: "valid"}
	switch {
	case now.Before(leaf.NotBefore):
		cd.State = "not yet valid"
	case now.After(leaf.NotAfter):
		cd.State = "expired"
	}
	for _, u := range leaf.URIs {
		if u.Scheme == "spiffe" {
			cd.Identity = u.String()
			break
		}
	}
	for _, c := range chain {
		ci := certInfo{
			SerialNumber:   c.SerialNumber.Text(16),
			Subject:        c.Subject.String(),
			Issuer:         c.Issuer.String(),
			ValidFrom:      c.NotBefore.UTC(),
			ExpirationTime: c.NotAfter.UTC(),
			IsCA:           c.IsCA,
		}
		for _, u := range c.URIs {
			ci.URIs = append(ci.URIs, u.String())
		}
		cd.CertChain = append(cd.CertChain, ci)
	}
	return cd
}
