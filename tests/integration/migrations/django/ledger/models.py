from django.db import models


class Account(models.Model):
    id = models.BigAutoField(primary_key=True)
    owner = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)
    note = models.TextField(default='', blank=True)


class Entry(models.Model):
    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name='entries')
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    memo = models.CharField(max_length=200, blank=True)
