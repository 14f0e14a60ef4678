"""experiments.common: the one way the studies score a classifier and the one training loop."""

from __future__ import annotations

import pytest
import torch

from experiments.common import classify, study_parser, train_epochs


class Fixed(torch.nn.Module):
    """Outputs the logits it was given, whatever the images (one parameter, unused)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.offset = torch.nn.Parameter(torch.zeros(()))
        self.seen_training: list[bool] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        return self.logits[images.long()] + self.offset


def test_classify_collects_probabilities_accuracy_cost_and_the_confidently_wrong():
    logits = torch.tensor([[3.0], [-3.0], [0.5], [-0.5], [4.0]])
    targets = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    net = Fixed(logits)
    batches = [(torch.arange(0, 3), targets[:3]), (torch.arange(3, 5), targets[3:])]
    verdict = classify(net, batches, torch.nn.BCEWithLogitsLoss())
    torch.testing.assert_close(verdict.probabilities, torch.sigmoid(logits).flatten())
    assert verdict.accuracy == pytest.approx(2 / 5)  # the first two are right
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits.flatten(), targets)
    assert verdict.cost == pytest.approx(expected.item())
    assert verdict.confidently_wrong(0.9) == 1  # P(cat) = σ(4) ≈ 0.98 for a not-cat
    assert net.seen_training == [False, False] and net.training  # scored in eval mode, restored


def test_classify_takes_probabilities_as_they_are_when_told():
    net = Fixed(torch.tensor([[0.9], [0.2]]))
    verdict = classify(net, [(torch.arange(2), torch.tensor([1.0, 1.0]))], probability=lambda p: p)
    assert torch.equal(verdict.probabilities, torch.tensor([0.9, 0.2]))
    assert torch.equal(verdict.targets, torch.tensor([1.0, 1.0]))
    assert verdict.accuracy == 0.5 and verdict.cost is None


def test_train_epochs_scores_before_training_and_after_each_epoch_and_counts_updates():
    torch.manual_seed(0)
    x, y = torch.randn(12, 3), (torch.rand(12) > 0.5).float()
    net = torch.nn.Linear(3, 1)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 12, 4)]
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seen = []

    def cost() -> float:
        return classify(net, batches, loss_fn).cost

    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    history = train_epochs(net, loss_fn, optimizer, batches, 4, cost, seen.append)
    assert history.updates == [0, 3, 6, 9, 12] and seen == list(range(1, 13))
    assert history.seconds[0] == 0.0 and history.seconds == sorted(history.seconds)
    assert len(history.scores) == 5 and history.scores[-1] < history.scores[0]


def test_train_epochs_is_the_plain_loop():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), (torch.rand(8) > 0.5).float()
    net, twin = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    twin.load_state_dict(net.state_dict())
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    loss_fn = torch.nn.MSELoss()
    train_epochs(net, loss_fn, torch.optim.SGD(net.parameters(), lr=0.1), batches, 2)
    optimizer = torch.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(2):
        for images, targets in batches:
            optimizer.zero_grad()
            loss_fn(twin(images), targets.view(-1, 1)).backward()
            optimizer.step()
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_study_parser_has_the_shared_flags(tmp_path):
    args = study_parser("d", tmp_path).parse_args(["--tiny", "--threads", "2"])
    assert (args.out, args.tiny, args.threads) == (tmp_path, True, 2)
