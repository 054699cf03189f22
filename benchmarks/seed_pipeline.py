"""A re-creation of the seed study's training pipeline, kept only as a speed reference.

The seed study ("version 3": cross-entropy + triplet + ArcFace) trained like this; every
piece below says which part of it it reproduces. It is written here from the description of
that pipeline (README, "Differences from the original study"), not copied from it, and it is
deliberately NOT what ``lib`` does: the point is to measure how much ``lib`` gains.

What is reproduced (each costs time):
  * data loading: a torch ``Dataset`` that tokenises one sentence per ``__getitem__`` call,
    every epoch, padded to a fixed ``max_length`` (128), collated by the default
    ``DataLoader`` collate (stack of [1, 128] tensors, then ``squeeze(1)``);
  * the model: encoder called with ``token_type_ids``, a float attention mask and
    ``output_hidden_states=True``; mean pooling over ALL positions, padding included; the
    embedding head LayerNorm -> Linear -> Tanh -> Dropout; a classifier that ends in a
    Softmax, whose output is then given to ``nn.CrossEntropyLoss`` (softmax before CE);
  * triplet mining: a Python enumeration of (anchor, positive, negative) index triplets with
    ``itertools.product`` per anchor class, filtered by list comprehensions, put in a pandas
    DataFrame and de-duplicated, then turned into index tensors; one class (the last) is never
    used as a negative, as the original's ``range(5)`` over six classes did;
  * the triplet loss computed over the selected triplets (squared L2 distance of normalised
    embeddings, relu(d_ap - d_an + margin), mean over the non-zero terms);
  * ArcFace whose class centres are never given to the optimizer (gradients are computed for
    them, and never used);
  * per-step bookkeeping: running loss sums kept as autograd tensors, predictions and labels
    appended to Python lists with ``.tolist()``, and every batch's embeddings stacked into one
    growing numpy array with ``np.vstack`` (a full re-copy each step: the original kept them
    for its t-SNE plots); accuracy and macro-F1 over the epoch at its end;
  * fp32 throughout (the original's ``torch.cuda.amp`` autocast and GradScaler do nothing on
    a CPU), gradient clipping over all model parameters, a RAdam optimizer with one learning
    rate for everything.

What is NOT reproduced: the t-SNE plots and model checkpoints written after every epoch
(they would only make the reference slower), KoBERT and its SentencePiece sampling tokenizer
(the same encoder as ours, MiniLM, is used so that only the pipeline differs).
"""
from __future__ import annotations

import copy
import itertools
import math
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

SEED_MAX_LENGTH = 128


class PerItemTokenizingDataset(Dataset):
    """Reproduces the original data loading: tokenise in ``__getitem__``, pad to max_length."""

    def __init__(self, texts, labels, tokenizer, max_length: int = SEED_MAX_LENGTH):
        self.texts = list(texts)
        self.labels = np.asarray(labels)
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, idx):
        enc = self.tokenizer(self.texts[idx], padding="max_length", truncation=True, return_tensors="pt",
                             max_length=self.max_length)
        text = [enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]]  # each [1, max_length]
        return {"text": text, "label": torch.tensor(int(self.labels[idx]), dtype=torch.long)}


def make_loader(texts, labels, tokenizer, batch_size: int, seed: int) -> DataLoader:
    """Reproduces ``DataLoader(dataset, batch_size, shuffle=True)`` with the default collate."""
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(PerItemTokenizingDataset(texts, labels, tokenizer), batch_size=batch_size, shuffle=True,
                      generator=gen)


class SeedModel(nn.Module):
    """Reproduces the original model: mean over padding, softmax classifier."""

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int, embedding_size: int = 128,
                 dropout_p: float = 0.3):
        super().__init__()
        self.encoder = encoder
        self.embedder = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, embedding_size), nn.Tanh(),
                                      nn.Dropout(dropout_p))
        # The original classifier ends in Softmax; its output then goes into CrossEntropyLoss.
        self.classifier = nn.Sequential(nn.LayerNorm(embedding_size), nn.Linear(embedding_size, num_classes),
                                        nn.Tanh(), nn.Dropout(dropout_p), nn.Softmax(dim=-1))

    def forward(self, token_ids, attention_mask, token_type_ids):
        # The original built its encoder with output_hidden_states=True and passed a float mask.
        out = self.encoder(input_ids=token_ids, token_type_ids=token_type_ids.long(),
                           attention_mask=attention_mask.float(), output_hidden_states=True)
        pooled = torch.mean(out.last_hidden_state, 1)  # mean over padding tokens too
        embeddings = self.embedder(pooled)
        return embeddings, self.classifier(embeddings)


def seed_triplet_indices(labels: torch.Tensor, num_classes: int):
    """Reproduces the original triplet enumeration in Python (itertools.product + pandas).

    For every anchor class: product(members, members, negatives); drop a == p; keep each
    unordered (a, p) pair once; de-duplicate in a DataFrame. The last class is never put in
    any negative list (the original looped over ``range(5)`` with six classes).
    """
    device = labels.device
    y = labels.detach().cpu().numpy()
    members = {c: list(np.where(y == c)[0]) for c in range(num_classes)}
    triplets = []
    for anchor_class in range(num_classes):
        same = members[anchor_class]
        negatives = []
        for neg_class in [c for c in range(num_classes - 1) if c != anchor_class]:  # last class skipped
            negatives += members[neg_class]
        triplets.extend(list(itertools.product(same, same, negatives)))
    triplets = [t for t in triplets if t[0] != t[1]]
    triplets = [(t[1], t[0], t[2]) for t in triplets if t[0] > t[1]]
    frame = pd.DataFrame(triplets, columns=["anc", "pos", "neg"])
    frame = frame.drop_duplicates()
    return (torch.tensor(frame["anc"].values).long().to(device),
            torch.tensor(frame["pos"].values).long().to(device),
            torch.tensor(frame["neg"].values).long().to(device))


def seed_triplet_loss(embeddings: torch.Tensor, indices, margin: float = 0.3) -> torch.Tensor:
    """The triplet margin loss over the enumerated triplets (squared L2 of normalised vectors)."""
    a, p, n = indices
    if len(a) == 0:
        return embeddings.sum() * 0.0
    z = F.normalize(embeddings, dim=1)
    dist = torch.cdist(z, z, p=2) ** 2  # full B x B matrix, then gathered per triplet
    losses = F.relu(dist[a, p] - dist[a, n] + margin)
    nonzero = losses > 0
    return losses[nonzero].mean() if bool(nonzero.any()) else losses.sum() * 0.0


class SeedArcFace(nn.Module):
    """ArcFace through acos/cos, with centres that no optimizer ever updates."""

    def __init__(self, num_classes: int, embedding_size: int, margin_degrees: float = 28.6, scale: float = 8.0):
        super().__init__()
        self.W = nn.Parameter(torch.empty(embedding_size, num_classes))
        nn.init.xavier_normal_(self.W)
        self.margin = math.radians(margin_degrees)
        self.scale = scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(embeddings, dim=1) @ F.normalize(self.W, dim=0)
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
        logits = torch.where(onehot, torch.cos(theta + self.margin), cos)
        return F.cross_entropy(self.scale * logits, labels)


class SeedPipeline:
    """One training set-up of the seed study: model, losses (the combined sum), optimizer."""

    def __init__(self, encoder: nn.Module, tokenizer, num_classes: int, weights=(0.15, 0.4, 0.45),
                 triplet_margin: float = 0.3, arcface_scale: float = 8.0, lr: float = 3e-5, clip: float = 1.0,
                 batch_size: int = 32, embedding_size: int = 128):
        self.tokenizer = tokenizer
        self.num_classes = num_classes
        self.r_ce, self.r_trplt, self.r_arcf = weights
        self.triplet_margin = triplet_margin
        self.batch_size = batch_size
        self.clip = clip
        self.embedding_size = embedding_size
        self.model = SeedModel(copy.deepcopy(encoder), encoder.config.hidden_size, num_classes, embedding_size)
        self.crit_ce = nn.CrossEntropyLoss()
        self.crit_arcf = SeedArcFace(num_classes, embedding_size, scale=arcface_scale)
        # Only model.parameters(): the ArcFace centres are left out, as in the original.
        self.optimizer = torch.optim.RAdam(self.model.parameters(), lr=lr)

    def train_epoch(self, texts, labels, seed: int = 0) -> dict:
        """One epoch as the original trained it; returns timing and bookkeeping figures."""
        t0 = time.perf_counter()
        loader = make_loader(texts, labels, self.tokenizer, self.batch_size, seed)
        model = self.model
        model.train()
        train_loss, loss_ce, loss_trplt, loss_arcf = 0.0, 0.0, 0.0, 0.0
        num_indices, steps, seen = 0, 0, 0
        total_pred, total_label = [], []
        total_embeddings = np.empty((0, self.embedding_size), int)
        for batch in loader:
            text = batch["text"]
            token_ids = text[0].squeeze(1).long()
            attention_mask = text[1].squeeze(1).long()
            token_type_ids = text[2].squeeze(1).long()
            label = batch["label"].long().view(-1)

            self.optimizer.zero_grad()
            embeddings, preds = model(token_ids, attention_mask, token_type_ids)
            indices_tuple = seed_triplet_indices(label, self.num_classes)
            loss_ce_ = self.crit_ce(preds, label) if self.r_ce else 0  # CE on softmax outputs
            loss_trplt_ = seed_triplet_loss(embeddings, indices_tuple, self.triplet_margin) if self.r_trplt else 0
            loss_arcf_ = self.crit_arcf(embeddings, label) if self.r_arcf else 0
            loss = loss_ce_ * self.r_ce + loss_trplt_ * self.r_trplt + loss_arcf_ * self.r_arcf
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            self.optimizer.step()

            # running sums kept as tensors attached to the graph, as the original did
            train_loss += loss
            loss_ce += loss_ce_
            loss_trplt += loss_trplt_
            loss_arcf += loss_arcf_
            num_indices += len(indices_tuple[0])
            # every batch's embeddings re-stacked into one growing array (kept for t-SNE)
            total_embeddings = np.vstack([total_embeddings, embeddings.float().detach().cpu().numpy()])
            total_pred += torch.argmax(preds, dim=-1).detach().cpu().numpy().tolist()
            total_label += label.detach().cpu().numpy().tolist()
            steps += 1
            seen += len(label)

        accuracy = accuracy_score(total_label, total_pred)
        macro_f1 = f1_score(total_label, total_pred, average="macro")
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "sentences": seen, "steps": steps, "sentences_per_second": seen / seconds,
                "triplets_per_step": num_indices / max(steps, 1),
                "train_loss": float(train_loss.detach()) / max(steps, 1),
                "train_accuracy": float(accuracy), "train_macro_f1": float(macro_f1),
                "stacked_embeddings_shape": list(total_embeddings.shape)}
