package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"x0tta6bl4/internal/control/api"
	"x0tta6bl4/internal/control/client"
	"x0tta6bl4/internal/governance"
	"x0tta6bl4/internal/identity"
	"x0tta6bl4/internal/policy"
	"x0tta6bl4/internal/secfile"
)

const maxMemberKeyFile = 16 << 10

// memberFlags collects --dao-member NAME=PUBLIC-KEY-FILE[:WEIGHT].
type memberFlags []governance.Member

func (m *memberFlags) String() string { return fmt.Sprintf("%d members", len(*m)) }

func (m *memberFlags) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want NAME=PUBLIC-KEY-FILE[:WEIGHT]")
	}
	file, weight := rest, uint64(1)
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		w, err := strconv.ParseUint(rest[i+1:], 10, 32)
		if err != nil {
			return fmt.Errorf("weight: %w", err)
		}
		file, weight = rest[:i], w
	}
	k, err := loadMemberPublicKey(file)
	if err != nil {
		return err
	}
	*m = append(*m, governance.Member{Name: name, Weight: uint32(weight), Key: k})
	return nil
}

func loadMemberPublicKey(path string) (*identity.VerifyKey, error) {
	data, err := secfile.Read(path, maxMemberKeyFile)
	if err != nil {
		return nil, err
	}
	k, err := governance.ParseMemberPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ctlDAOKeygen makes a member key on this machine: the private key file (0600) and the public key
// file that 'control init --dao-member' or an admit proposal takes. Nothing is sent anywhere.
func ctlDAOKeygen(e *env, args []string) error {
	fs := newFlags(e, "ctl dao keygen", "--out alice.key")
	out := fs.String("out", "", "private key file to create; the public key goes next to it, its extension replaced by .pub (m1.key: m1.pub; m1: m1.pub)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "out", *out); err != nil {
		return err
	}
	k, err := identity.GenerateSigningKey()
	if err != nil {
		return err
	}
	pub := publicKeyPath(*out)
	if pub == *out {
		return fmt.Errorf("--out %s: the public key would take the same name; name the private key otherwise (m1.key)", *out)
	}
	if err := secfile.Write(*out, governance.MarshalMemberKey(k), 0o600, false); err != nil {
		return err
	}
	if err := secfile.Write(pub, governance.MarshalMemberPublicKey(k.PublicKey()), 0o644, false); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "member key:  %s (keep it; it never leaves this machine)\npublic key:  %s\nkey ID:      %s\n", *out, pub, k.PublicKey().ID())
	return nil
}

// ctlDAOPropose puts one action to the members.
func ctlDAOPropose(e *env, args []string) error {
	fs, c := ctlFlags(e, "dao propose", "--title T --action policy|revoke|admit|retire|model|heal|prices [action flags]")
	title := fs.String("title", "", "what the proposal does, for people")
	action := fs.String("action", "", "policy, revoke, admit, retire, model, heal or prices")
	policyFile := fs.String("policy-file", "", "policy: the new access policy source (YAML or JSON)")
	node := fs.String("node", "", "revoke: the node's name")
	memberName := fs.String("member-name", "", "admit: the new member's name")
	memberKey := fs.String("member-key", "", "admit: the new member's public key file; retire: the member's public key file")
	weight := fs.Uint("weight", 1, "admit: the new member's weight")
	modelHash := fs.String("model-sha256", "", "model: SHA-256 of the model file (hex)")
	modelName := fs.String("model-name", "", "model: its name")
	jsonFile := fs.String("json-file", "", "heal: an api.HealSpec; prices: a list of api.PriceSpec (JSON)")
	voting := fs.Duration("voting", 24*time.Hour, "voting window, from now")
	timelock := fs.Duration("timelock", time.Hour, "wait after the window before a passed proposal is enacted")
	quorum := fs.Uint("quorum-bps", 5000, "quorum: basis points of the frozen total weight that must vote")
	threshold := fs.Uint("threshold-bps", 6000, "threshold: basis points of yes among yes + no")
	quadratic := fs.Bool("quadratic", false, "weigh each member by the integer square root of its weight")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	if err := required(fs, "title", *title); err != nil {
		return err
	}
	req := api.ProposalRequest{Title: *title, VotingSeconds: int64(*voting / time.Second), TimelockSeconds: int64(*timelock / time.Second),
		QuorumBPS: uint16(min(*quorum, 65535)), ThresholdBPS: uint16(min(*threshold, 65535)), Quadratic: *quadratic,
		Action: api.ProposalAction{Type: *action}}
	readJSON := func(v any) error {
		if err := required(fs, "json-file", *jsonFile); err != nil {
			return err
		}
		data, err := secfile.Read(*jsonFile, 1<<20)
		if err != nil {
			return err
		}
		return json.Unmarshal(data, v)
	}
	switch *action {
	case "policy":
		if err := required(fs, "policy-file", *policyFile); err != nil {
			return err
		}
		data, err := secfile.Read(*policyFile, policy.MaxSourceSize)
		if err != nil {
			return err
		}
		if req.Action.Policy, err = policy.ParseSource(data); err != nil {
			return fmt.Errorf("%s: %w", *policyFile, err)
		}
	case "revoke":
		req.Action.Node = *node
	case "admit", "retire":
		k, err := loadMemberPublicKey(*memberKey)
		if err != nil {
			return err
		}
		req.Action.Member = &api.MemberSpec{Name: *memberName, Weight: uint32(min(*weight, 1<<32-1)), PublicKey: k.Bytes()}
		if *action == "retire" {
			req.Action.Member = &api.MemberSpec{KeyID: k.ID().String()}
		}
	case "model":
		req.Action.Model = &api.ModelSpec{SHA256: *modelHash, Name: *modelName}
	case "heal":
		req.Action.Heal = &api.HealSpec{}
		if err := readJSON(req.Action.Heal); err != nil {
			return err
		}
	case "prices":
		if err := readJSON(&req.Action.Prices); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--action %q: want policy, revoke, admit, retire, model, heal or prices", *action)
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Proposal, error) { return a.Propose(ctx, req) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) { printProposal(w, res) })
}

func printProposal(w io.Writer, p *api.Proposal) {
	fmt.Fprintf(w, "proposal\t%s\ntitle\t%s\naction\t%s\nstate\t%s\nvoting\t%s to %s\nexecutable at\t%s\n",
		p.ID, p.Title, p.Action, p.State, p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339), p.ExecutableAt.Format(time.RFC3339))
	if p.PolicyVersion != 0 {
		fmt.Fprintf(w, "policy version\t%d\n", p.PolicyVersion)
	}
	fmt.Fprintf(w, "quorum, threshold\t%d, %d basis points (quadratic: %t)\ntally\tyes %d, no %d, abstain %d of %d (%d ballots)\n",
		p.QuorumBPS, p.ThresholdBPS, p.Quadratic, p.Tally.Yes, p.Tally.No, p.Tally.Abstain, p.Tally.Total, p.Ballots)
}

// ctlDAOVote fetches the proposal, checks that its encoding hashes to the id asked for, signs a
// ballot with the member's key on this machine and sends only the ballot.
func ctlDAOVote(e *env, args []string) error {
	fs, c := ctlFlags(e, "dao vote", "--key alice.key --proposal ID --choice yes|no|abstain [--sequence N]")
	keyFile := fs.String("key", "", "the member's private key file (from 'ctl dao keygen')")
	id := fs.String("proposal", "", "proposal id")
	choice := fs.String("choice", "", "yes, no or abstain")
	seq := fs.Uint("sequence", 1, "1 for a first vote; a higher one replaces an earlier ballot inside the window")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	for name, v := range map[string]string{"key": *keyFile, "proposal": *id, "choice": *choice} {
		if err := required(fs, name, v); err != nil {
			return err
		}
	}
	ch, err := governance.ParseChoice(*choice)
	if err != nil {
		return err
	}
	pid, err := governance.ParseID(*id)
	if err != nil {
		return err
	}
	data, err := secfile.ReadSecret(*keyFile, maxMemberKeyFile)
	if err != nil {
		return err
	}
	key, err := governance.ParseMemberKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.VoteReceipt, error) {
		doc, err := a.Proposal(ctx, pid.String())
		if err != nil {
			return nil, err
		}
		p, err := governance.ParseProposal(doc.Encoded)
		if err != nil {
			return nil, fmt.Errorf("the control plane's proposal: %w", err)
		}
		if p.ID() != pid {
			return nil, fmt.Errorf("the control plane's proposal hashes to %s, not %s: not signing", p.ID(), pid)
		}
		fmt.Fprintf(e.stderr, "voting %s on %q (%s)\n", ch, p.Title, p.Action.Type())
		b, err := governance.SignBallot(key, pid, ch, uint32(min(*seq, 1<<32-1)), e.now())
		if err != nil {
			return nil, err
		}
		return a.Vote(ctx, b.Bytes())
	})
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintf(w, "ballot counted\t%s voted %s (sequence %d) on %s\nreceipt\tlog entry %d, hash %s\ntally\tyes %d, no %d, abstain %d of %d\n",
			res.Voter, res.Choice, res.Sequence, res.Proposal, res.LogSeq, res.EntryHash, res.Tally.Yes, res.Tally.No, res.Tally.Abstain, res.Tally.Total)
	})
}

// ctlDAOShow lists proposals, or shows one.
func ctlDAOShow(e *env, args []string) error {
	fs, c := ctlFlags(e, "dao show", "[ID]")
	if wantsHelp(args) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return errHelp
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 1 {
		fs.Usage()
		return errUsage
	}
	if fs.NArg() == 1 {
		res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Proposal, error) { return a.Proposal(ctx, fs.Arg(0)) })
		if err != nil {
			return err
		}
		return c.print(e, res, func(w io.Writer) { printProposal(w, res) })
	}
	res, err := query(e, c, func(ctx context.Context, a *client.API) (*api.Proposals, error) { return a.Proposals(ctx) })
	if err != nil {
		return err
	}
	return c.print(e, res, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tSTATE\tACTION\tYES\tNO\tABSTAIN\tTOTAL\tTITLE")
		for _, p := range res.Proposals {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", p.ID[:16], p.State, p.Action, p.Tally.Yes, p.Tally.No, p.Tally.Abstain, p.Tally.Total, p.Title)
		}
	})
}

// ctlDAOVerify reads the whole governance log and replays it: the chain, every proposal, ballot
// and enactment, every tally. With --genesis it also checks the log starts from that roster.
func ctlDAOVerify(e *env, args []string) error {
	fs, c := ctlFlags(e, "dao verify", "[--genesis genesis-roster.pem]")
	genesisFile := fs.String("genesis", "", "the genesis roster the log must start from (control init wrote it)")
	if err := e.parse(fs, args, 0); err != nil {
		return err
	}
	var pinned *governance.Roster
	if *genesisFile != "" {
		data, err := secfile.Read(*genesisFile, 1<<20)
		if err != nil {
			return err
		}
		if pinned, err = governance.ParseRosterPEM(data); err != nil {
			return fmt.Errorf("%s: %w", *genesisFile, err)
		}
	}
	var raws [][]byte
	_, err := query(e, c, func(ctx context.Context, a *client.API) (struct{}, error) {
		var after uint64
		for {
			page, err := a.GovernanceLog(ctx, after)
			if err != nil {
				return struct{}{}, err
			}
			raws = append(raws, page.Entries...)
			after += uint64(len(page.Entries))
			if !page.More || len(page.Entries) == 0 {
				return struct{}{}, nil
			}
		}
	})
	if err != nil {
		return err
	}
	sum := governance.NewLogSummary()
	for i, raw := range raws {
		entry, err := governance.ParseEntry(raw)
		if err != nil {
			return fmt.Errorf("governance log entry %d: %w", i+1, err)
		}
		if err := sum.Append(entry); err != nil {
			return err
		}
	}
	if sum.State == nil {
		return errors.New("the governance log is empty")
	}
	if pinned != nil && sum.Proposals != nil {
		first, _ := governance.ParseEntry(raws[0])
		if r, err := governance.ParseRoster(first.Payload); err != nil || r.Hash() != pinned.Hash() {
			return fmt.Errorf("governance log entry 1: the genesis roster is not the one in %s", *genesisFile)
		}
	}
	enacted := 0
	for _, lp := range sum.Proposals {
		if lp.Enacted {
			enacted++
		}
	}
	r := sum.State.Roster()
	fmt.Fprintf(e.stdout, "governance log verified: %d entries, head %s\n%d proposals (%d enacted), every tally recomputed\nroster epoch %d, %d members, hash %s\n",
		sum.HeadSeq, hex.EncodeToString(sum.Head[:]), len(sum.Proposals), enacted, r.Epoch, len(r.Members), hexHash(r.Hash()))
	return nil
}

func hexHash(h [32]byte) string { return hex.EncodeToString(h[:]) }
