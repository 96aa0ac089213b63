package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"
)

// Files of a certificates directory (cairn cert ...). The node certificate
// serves both sides of node-to-node mTLS, and the CLI presents it too.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
)

// ErrCertExists is returned when a certificate file would be overwritten.
var ErrCertExists = errors.New("certificate file already exists")

// CreateCA writes a new self-signed CA certificate and key into dir. It
// refuses to overwrite an existing ca.crt or ca.key.
func CreateCA(dir string, lifetime time.Duration) error {
	if err := refuseExisting(dir, CACertFile, CAKeyFile); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("creating CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"cairn"}, CommonName: "cairn CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("creating CA certificate: %w", err)
	}
	return writePair(dir, CACertFile, CAKeyFile, der, key)
}

// CreateNodeCert writes node.crt and node.key into dir, signed by the CA
// whose ca.crt and ca.key are in caDir, valid for hosts (IP addresses or
// DNS names) as a server and as a client. It copies ca.crt into dir when
// dir is not caDir, so dir alone is what a node needs (--certs-dir).
func CreateNodeCert(dir, caDir string, hosts []string, lifetime time.Duration) error {
	if err := refuseExisting(dir, NodeCertFile, NodeKeyFile); err != nil {
		return err
	}
	ca, err := tls.LoadX509KeyPair(filepath.Join(caDir, CACertFile), filepath.Join(caDir, CAKeyFile))
	if err != nil {
		return fmt.Errorf("loading the CA from %s: %w", caDir, err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return fmt.Errorf("parsing the CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("creating node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"cairn"}, CommonName: "node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return fmt.Errorf("creating node certificate: %w", err)
	}
	if err := writePair(dir, NodeCertFile, NodeKeyFile, der, key); err != nil {
		return err
	}
	if filepath.Clean(dir) != filepath.Clean(caDir) {
		data, err := os.ReadFile(filepath.Join(caDir, CACertFile))
		if err != nil {
			return fmt.Errorf("copying the CA certificate: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, CACertFile), data, 0o644); err != nil {
			return fmt.Errorf("copying the CA certificate: %w", err)
		}
	}
	return nil
}

// LoadTLS reads ca.crt, node.crt and node.key from dir and returns the
// credentials of a node's gRPC server (which requires a client certificate
// signed by the CA) and of its clients (which verify the server against
// the CA and present the node certificate).
func LoadTLS(dir string) (server, client credentials.TransportCredentials, err error) {
	cfg, err := loadTLSConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	sc := cfg.Clone()
	sc.ClientAuth = tls.RequireAndVerifyClientCert
	sc.ClientCAs = cfg.RootCAs
	return credentials.NewTLS(sc), credentials.NewTLS(cfg), nil
}

func loadTLSConfig(dir string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading the node certificate from %s: %w", dir, err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("loading the CA certificate from %s: %w", dir, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("loading the CA certificate from %s: no certificate in %s", dir, CACertFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

func refuseExisting(dir string, names ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating certificates directory: %w", err)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, n), ErrCertExists)
		}
	}
	return nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", keyName, err)
	}
	if err := os.WriteFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", certName, err)
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
