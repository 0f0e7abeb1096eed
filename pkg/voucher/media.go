package voucher

// Content formats and media types.
const (
	// ContentFormatVoucherCOSE is the CoAP content format of a voucher and
	// of a voucher request, application/voucher-cose+cbor
	// (draft-ietf-anima-constrained-voucher).
	ContentFormatVoucherCOSE = 836
	// ContentFormatCBOR is application/cbor, the content format of status
	// telemetry.
	ContentFormatCBOR = 60

	// MediaTypeVoucherCOSE is the HTTP media type of a voucher request.
	MediaTypeVoucherCOSE = "application/voucher-cose+cbor"
	// MediaTypeCountersigned is the HTTP media type of the MASA's answer.
	MediaTypeCountersigned = "application/embark-countersigned-voucher+cbor"
	// MediaTypeRegistration is the HTTP media type of a domain registration.
	MediaTypeRegistration = "application/embark-masa-registration+cbor"
)

// Content types in the COSE protected header (label 3): a message of one
// kind cannot pass as another.
const (
	TypeVoucher          = "application/embark-voucher+cbor"
	TypePledgeRequest    = "application/embark-pledge-voucher-request+cbor"
	TypeRegistrarRequest = "application/embark-registrar-voucher-request+cbor"
)

// Paths of the BRSKI resources and of the MASA's HTTPS API.
const (
	// PathVoucherRequest (CoAP, registrar): POST a pledge request, get a voucher.
	PathVoucherRequest = "/.well-known/brski/rv"
	// PathVoucherStatus (CoAP, registrar): POST voucher status telemetry.
	PathVoucherStatus = "/.well-known/brski/vs"
	// PathEnrollStatus (CoAP, registrar): POST enrollment status telemetry.
	PathEnrollStatus = "/.well-known/brski/es"
	// PathMASARequestVoucher (HTTPS, MASA): POST a registrar request.
	PathMASARequestVoucher = "/.well-known/brski/requestvoucher"
	// PathMASARegister (HTTPS, MASA): POST a domain registration.
	PathMASARegister = "/.well-known/brski/register"
)

// Limits of the wire format.
const (
	// MaxVoucher bounds a COSE voucher.
	MaxVoucher = 4 << 10
	// MaxRequest bounds a pledge or registrar request.
	MaxRequest = 12 << 10
	// MaxEnvelope bounds a countersigned voucher or a registration.
	MaxEnvelope = 32 << 10
	// MinNonce and MaxNonce bound a nonce.
	MinNonce, MaxNonce = 8, 64
	// MaxSerial bounds a serial number.
	MaxSerial = 128
)
