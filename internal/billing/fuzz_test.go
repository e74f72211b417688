package billing

import "testing"

func seeds(f *testing.F, files ...string) {
	for _, n := range files {
		f.Add(body(f, n))
	}
	f.Add([]byte("<html>"))
	f.Add([]byte("{"))
}

func FuzzDecodeTronTxInfo(f *testing.F) {
	seeds(f, "tron/info_success.json", "tron/info_failed.json", "tron/info_not_solidified.json")
	r := tronRules(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := DecodeTronTxInfo(b)
		if err != nil {
			return
		}
		ts, err := r.Verify(info)
		for _, tr := range ts {
			if err != nil || tr.Amount < 0 || tr.To != testReceiver {
				t.Fatalf("bad transfer %+v %v", tr, err)
			}
		}
	})
}

func FuzzDecodeTRC20List(f *testing.F) {
	seeds(f, "tron/trc20_list.json", "tron/trc20_list_empty.json")
	f.Fuzz(func(t *testing.T, b []byte) { DecodeTRC20List(b) })
}

func FuzzDecodeTonTransactions(f *testing.F) {
	seeds(f, "ton/transactions_jetton.json", "ton/transactions_native.json", "ton/transactions_empty.json")
	r := tonRules(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		txs, err := DecodeTonTransactions(b)
		if err != nil {
			return
		}
		for _, tx := range txs {
			tr, err := r.Verify(tx)
			if err == nil && (tr.Amount <= 0 && tr.Network == Ton || tr.Amount < 0) {
				t.Fatalf("bad transfer %+v", tr)
			}
		}
	})
}

// FuzzBoC feeds message bodies straight to the bag-of-cells reader and the comment and
// notification readers.
func FuzzBoC(f *testing.F) {
	txs, _ := DecodeTonTransactions(body(f, "ton/transactions_jetton.json"))
	f.Add(txs[0].InMsg.Body)
	txs, _ = DecodeTonTransactions(body(f, "ton/transactions_native.json"))
	f.Add(txs[0].InMsg.Body)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseBoC(b)
		if err != nil {
			return
		}
		textComment(&slice{c: c})
		s := &slice{c: c}
		s.uint(96)
		s.coins()
		s.address()
		if s.bit() {
			s.nextRef()
		}
	})
}
